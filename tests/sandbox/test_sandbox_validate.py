"""validate_source and the CLI: the reference losses pass; each stage reports its own failures."""

import json
import subprocess
import sys

import pytest

from sandbox.validate import ValidationResult, validate_source
from tests.sandbox.discopop_losses import ALL_LOSSES


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_reference_losses_are_valid(pool, name):
    result = validate_source(ALL_LOSSES[name], pool=pool)
    assert result.valid, result.error
    assert (result.stage, result.error) == (None, None)
    assert len(result.fingerprint) == 16
    assert result.seconds < 5


STAGES = {
    "policy": ("import os\ndef loss_fn(a, b, c, d, beta):\n    return a - b\n", "policy", "[import]"),
    "execution": (
        "def loss_fn(a, b, c, d, beta):\n    return a / 0 + undefined_helper(b)\n",
        "policy",
        "unknown",
    ),
    "raises": ("def loss_fn(a, b, c, d, beta):\n    return a @ b @ c\n", "execution", "RuntimeError"),
    "gradient_tests": (
        "def loss_fn(a, b, c, d, beta):\n    return F.logsigmoid(beta * (a - b))\n",
        "gradient_tests",
        "direction[random",
    ),
}


@pytest.mark.parametrize(("source", "stage", "fragment"), STAGES.values(), ids=STAGES.keys())
def test_failures_name_their_stage(pool, source, stage, fragment):
    result = validate_source(source, pool=pool)
    assert not result.valid
    assert result.stage == stage
    assert fragment in result.error
    assert result.fingerprint is None and result.canonical_form is None


def test_execution_errors_point_at_the_candidate_line(pool):
    source = "def loss_fn(a, b, c, d, beta):\n    y = a.sum()\n    return torch.log(y) @ b\n"
    result = validate_source(source, pool=pool)
    assert result.stage == "execution"
    assert "(line 3: `return torch.log(y) @ b`) on the 'random' inputs" in result.error


def test_custom_entry_for_registry_functions(pool):
    source = ALL_LOSSES["hinge"].replace("def loss_fn", "def hinge")
    assert validate_source(source, entry="hinge", pool=pool).valid
    assert validate_source(source, pool=pool).stage == "policy"


def test_without_a_pool_a_temporary_one_is_used():
    result = validate_source(ALL_LOSSES["sigmoid"])
    assert result.valid and result.canonical_form == "log(1 + exp(-beta*margin))"


def test_json_shape():
    result = ValidationResult(False, "policy", "policy: line 1: [import] x", None, None, 0.123456)
    assert result.to_json() == {
        "valid": False,
        "stage": "policy",
        "error": "policy: line 1: [import] x",
        "fingerprint": None,
        "seconds": 0.1235,
    }


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "sandbox.validate", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_exit_codes_and_json(tmp_path):
    valid, invalid = tmp_path / "valid.py", tmp_path / "invalid.py"
    valid.write_text(ALL_LOSSES["lrml"])
    invalid.write_text("import socket\ndef loss_fn(a, b, c, d, beta):\n    return a - b\n")

    ok = _cli(str(valid), "--json")
    assert ok.returncode == 0, ok.stderr
    payload = json.loads(ok.stdout)
    assert set(payload) == {"valid", "stage", "error", "fingerprint", "seconds"}
    assert payload["valid"] is True and payload["stage"] is None and len(payload["fingerprint"]) == 16

    bad = _cli(str(invalid), "--json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["stage"] == "policy"

    plain = _cli(str(invalid))
    assert plain.returncode == 1 and plain.stdout.startswith("invalid (policy): policy: line 1: [import]")

    assert _cli().returncode == 2
    assert _cli(str(tmp_path / "missing.py")).returncode == 2
