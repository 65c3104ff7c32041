"""The installed llama.cpp must run on every x86-64 CPU of the machine kind we support.

Built with the host's native flags on a CPU with AMX, ggml compiles its AMX matrix kernels in, and the server then
takes a general protection fault at ``ldtilecfg`` on the first chat completion. The README's install command builds
with ``GGML_NATIVE=OFF`` (AVX2, no AMX); this test catches an install that did not (for example a wheel that pip
reused from its cache after an earlier native build), also on machines without AMX, where the crash would not show.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

AMX_TILE_INSTRUCTIONS = ("ldtilecfg", "tileloadd", "tdpbssd", "tdpbf16ps")


def _ggml_libraries() -> list[Path]:
    import llama_cpp

    found = sorted(Path(llama_cpp.__file__).parent.glob("lib/libggml*.so"))
    assert found, "llama_cpp ships no libggml*.so: is llama-cpp-python installed from source?"
    return found


@pytest.mark.skipif(platform.machine() != "x86_64", reason="AMX exists on x86-64 only")
@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) is not installed")
def test_llama_cpp_has_no_amx_tile_instructions():
    offenders = {}
    for library in _ggml_libraries():
        listing = subprocess.run(
            ["objdump", "-d", "--no-show-raw-insn", str(library)], capture_output=True, text=True, check=True
        ).stdout
        used = sorted(
            {name for name in AMX_TILE_INSTRUCTIONS if f"\t{name} " in listing or f" {name} " in listing}
        )
        if used:
            offenders[library.name] = used
    assert not offenders, (
        f"llama.cpp was built with AMX kernels {offenders}; it crashes on AMX CPUs. Reinstall it without native "
        'flags: CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON" pip install --no-cache-dir --force-reinstall '
        "--no-deps llama-cpp-python"
    )
