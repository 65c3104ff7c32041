"""A scripted OpenAI-compatible chat server on loopback, for driving proposers through faults.

Each request to ``/v1/chat/completions`` takes the next step of the script:

- ``{"reply": "text"}``            a normal completion whose message content is ``text``
- ``{"status": 500}``              an error status (429, 500, ...) with a JSON error body
- ``{"delay": 5.0, ...}``          sleep first (beyond the client's timeout), then do the rest of the step
- ``{"truncated": True}``          a 200 whose JSON body is cut off mid-way
- ``{"empty": True}``              a 200 with an empty body

When the script runs out, ``default`` is served. Every request's messages are kept in ``requests``, its whole
JSON body in ``bodies``."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(content: str) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
    }


class FakeLLM:
    def __init__(self, script: list[dict], default: dict | None = None) -> None:
        self.script = list(script)
        self.default = default or {"reply": "I have no idea."}
        self.requests: list[list[dict]] = []
        self.bodies: list[dict] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._send(
                    200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode()
                )

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake._lock:
                    fake.requests.append(body.get("messages", []))
                    fake.bodies.append(body)
                    step = fake.script.pop(0) if fake.script else fake.default
                if "delay" in step:
                    time.sleep(step["delay"])
                if "status" in step:
                    self._send(
                        step["status"], json.dumps({"error": {"message": "scripted failure"}}).encode()
                    )
                elif step.get("truncated"):
                    self._send(200, json.dumps(completion("partial answer"))[:40].encode())
                elif step.get("empty"):
                    self._send(200, b"")
                else:
                    self._send(200, json.dumps(completion(step["reply"])).encode())

            def _send(self, code: int, payload: bytes) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
