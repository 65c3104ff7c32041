"""Shared fixtures: one real llama.cpp judge for the session, behind a loopback proxy that counts judge calls."""

from __future__ import annotations

import os
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
