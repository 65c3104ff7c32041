"""The llama.cpp server lifecycle: a real chat completion, and a clean stop in every way a block can end."""

from __future__ import annotations

import os
import socket

import openai
import pytest

from evo.llama_server import (
    LlamaServer,
    LlamaServerConfig,
    LlamaServerError,
    embedded_server_config,
)
from trainer.processes import free_port


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_chat_completion_then_clean_stop():
    with LlamaServer(embedded_server_config(n_ctx=1024, n_threads=2)) as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.model == "smollm2-135m-instruct"
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        assert [m.id for m in client.models.list().data] == [server.model]
        reply = client.chat.completions.create(
            model=server.model,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            temperature=0,
        )
        assert reply.choices[0].message.content.strip()
        assert reply.usage.completion_tokens <= 8
        pgid = server._process.pid  # the server leads its own process group
        assert os.getpgid(pgid) == pgid != os.getpgid(0)
    assert not server.running
    assert not _group_alive(pgid)
    assert not _listening(server.port)
    server.stop()  # idempotent


def test_stops_when_the_block_raises():
    server = LlamaServer(embedded_server_config(n_ctx=512, n_threads=1))
    with pytest.raises(KeyboardInterrupt), server:
        pgid = server._process.pid
        raise KeyboardInterrupt  # what Ctrl-C raises in the main thread
    assert not _group_alive(pgid)


def test_a_broken_model_fails_fast_with_the_log(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file")
    server = LlamaServer(
        LlamaServerConfig(model_path=bad, startup_timeout_s=60, log_path=tmp_path / "server.log")
    )
    with pytest.raises(LlamaServerError, match="exited with code"):
        server.start()
    assert not server.running
    assert (tmp_path / "server.log").read_text()


def test_missing_model_and_free_port(tmp_path):
    with pytest.raises(FileNotFoundError):
        LlamaServer(LlamaServerConfig(model_path=tmp_path / "missing.gguf"))
    port = free_port()
    assert 0 < port < 65536 and not _listening(port)
