"""validate_source and the CLI: the reference losses pass and carry their graph; each stage reports its own
failures."""

import json
import subprocess
import sys

import pytest

from sandbox.graph_decode import decode_graph
from sandbox.validate import ValidationResult, validate_source
from tests.sandbox.discopop_losses import ALL_LOSSES


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_reference_losses_are_valid(sandbox_pool, name):
    result = validate_source(ALL_LOSSES[name], pool=sandbox_pool)
    assert result.valid, result.error
    assert (result.stage, result.error) == (None, None)
    assert len(result.fingerprint) == 16
    assert result.seconds < 5
    assert decode_graph(result.graph).contract == "sequence"
    assert result.isolation_missing == sandbox_pool.isolation_missing


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
    "trace": (
        "def loss_fn(a, b, c, d, beta):\n    if beta > 0.5:\n        return a\n    return a - b\n",
        "trace",
        "line 2: [control-flow]",
    ),
}


@pytest.mark.parametrize(("source", "stage", "fragment"), STAGES.values(), ids=STAGES.keys())
def test_failures_name_their_stage(sandbox_pool, source, stage, fragment):
    result = validate_source(source, pool=sandbox_pool)
    assert not result.valid
    assert result.stage == stage
    assert fragment in result.error
    assert result.fingerprint is None and result.canonical_form is None
    traced = stage == "gradient_tests" or fragment == "RuntimeError"  # it traced; its graph failed the tests
    assert (result.graph is not None) == traced


def test_execution_errors_point_at_the_candidate_line(sandbox_pool):
    source = "def loss_fn(a, b, c, d, beta):\n    y = a.sum()\n    return torch.log(y) @ b\n"
    result = validate_source(source, pool=sandbox_pool)
    assert result.stage == "execution"
    assert result.error.startswith("line 3: `operator.matmul` failed: RuntimeError")
    assert result.error.endswith("on the 'random' inputs")


def test_custom_entry_for_registry_functions(sandbox_pool):
    source = ALL_LOSSES["hinge"].replace("def loss_fn", "def hinge")
    assert validate_source(source, entry="hinge", pool=sandbox_pool).valid
    assert validate_source(source, pool=sandbox_pool).stage == "policy"


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
        "canonical_form": None,
        "isolation_missing": [],
        "seconds": 0.1235,
    }
    assert result.to_json(with_graph=True)["graph"] is None


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "sandbox.validate", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_exit_codes_and_json(tmp_path):
    valid, invalid = tmp_path / "valid.py", tmp_path / "invalid.py"
    valid.write_text(ALL_LOSSES["lrml"])
    invalid.write_text("import socket\ndef loss_fn(a, b, c, d, beta):\n    return a - b\n")

    ok = _cli(str(valid), "--json", "--graph")
    assert ok.returncode == 0, ok.stderr
    payload = json.loads(ok.stdout)
    keys = {
        "valid",
        "stage",
        "error",
        "fingerprint",
        "canonical_form",
        "isolation_missing",
        "seconds",
        "graph",
    }
    assert set(payload) == keys
    assert payload["valid"] is True and payload["stage"] is None and len(payload["fingerprint"]) == 16
    assert decode_graph(payload["graph"]).variants

    bad = _cli(str(invalid), "--json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["stage"] == "policy"

    plain = _cli(str(invalid))
    assert plain.returncode == 1 and plain.stdout.startswith("invalid (policy): policy: line 1: [import]")

    assert _cli().returncode == 2
    assert _cli(str(tmp_path / "missing.py")).returncode == 2
