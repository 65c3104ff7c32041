"""Shared fixtures: one real llama.cpp judge for the session, behind a loopback proxy that counts judge calls."""

from __future__ import annotations

import csv
import math
import os
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from evo.llama_server import LlamaServer, embedded_server_config

SHARED_DATA = Path(
    os.environ.get("EVOPO_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "mt_bench" / "question.jsonl").exists():
        pytest.skip(f"benchmark data not found under {SHARED_DATA} (set EVOPO_SHARED_DATA)")
    return SHARED_DATA


def write_df_gamed(path: Path, n: int = 805) -> Path:
    """A file in the format of alpaca_eval's `df_gamed.csv` (two length-gamed baselines over the n instructions:
    model, index, instruction_difficulty, preference in [0, 1], std_delta_len, not_gamed_baseline), with synthetic
    values whose preference follows the length difference, as in the real one."""
    rng = random.Random(0)
    difficulty = [rng.gauss(0, 1) for _ in range(n)]
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["model", "index", "instruction_difficulty", "preference", "std_delta_len", "not_gamed_baseline"]
        )
        for model, sign in (("gamed_verbose", 1), ("gamed_concise", -1)):
            for i in range(n):
                delta = sign * (0.5 + rng.random())
                preference = 1 / (1 + math.exp(-(1.5 * math.tanh(delta) + 0.3 * difficulty[i])))
                writer.writerow([model, i, difficulty[i], preference, delta, False])
    return path


@pytest.fixture
def df_gamed(tmp_path) -> Path:
    return write_df_gamed(tmp_path / "df_gamed.csv")


@dataclass
class CountingProxy:
    """An OpenAI-compatible endpoint that forwards to `upstream` and counts the completion requests."""

    base_url: str
    model: str
    calls: int = 0


def _proxy_handler(upstream: str, proxy: CountingProxy, lock: threading.Lock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _forward(self, body: bytes | None) -> None:
            request = urllib.request.Request(
                upstream + self.path.removeprefix("/v1"),
                data=body,
                method=self.command,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=600) as response:
                    status, payload = response.status, response.read()
            except urllib.error.HTTPError as err:
                status, payload = err.code, err.read()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802
            self._forward(None)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.endswith("/completions"):
                with lock:
                    proxy.calls += 1
            self._forward(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="session")
def llama_judge() -> Iterator[CountingProxy]:
    """The embedded SmolLM2 GGUF served by llama.cpp, reached through a call-counting proxy."""
    with LlamaServer(embedded_server_config(n_ctx=4096, n_threads=2)) as server:
        proxy = CountingProxy(base_url="", model=server.model)
        httpd = ThreadingHTTPServer(
            ("127.0.0.1", 0), _proxy_handler(server.base_url, proxy, threading.Lock())
        )
        proxy.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield proxy
        finally:
            httpd.shutdown()
            httpd.server_close()
