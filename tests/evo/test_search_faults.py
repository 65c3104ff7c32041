"""The search against a scripted LLM: garbage, truncated JSON, a malicious loss, a duplicate of DPO and HTTP
faults each end with the right recorded status, and the run goes on to train the valid proposal."""

import json
import uuid
from pathlib import Path

import pytest

from evo.archive import Archive
from tests.builders import launch
from tests.evo.fake_llm import FakeLLM

pytestmark = pytest.mark.slow  # a search, a CLI run or several trainings: minutes


def _reply(name: str, code: str) -> dict:
    return {"reply": json.dumps({"thought": f"trying {name}", "name": name, "code": code})}


def test_bad_proposals_become_statuses_and_the_run_goes_on(tmp_path, recipe):
    marker = Path("/tmp") / f"pwned-{uuid.uuid4().hex}"
    malicious = (
        f"import os\ndef loss_fn(pc, pr, rc, rr, beta):\n    os.system('touch {marker}')\n    return -pc\n"
    )
    still_malicious = (
        f"def loss_fn(pc, pr, rc, rr, beta):\n    open('{marker}', 'w').write('x')\n    return -(pc - pr)\n"
    )
    dpo_in_disguise = (
        "import torch.nn.functional as F\n"
        "def loss_fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,"
        " beta):\n"
        "    chosen = policy_chosen_logps - reference_chosen_logps\n"
        "    rejected = policy_rejected_logps - reference_rejected_logps\n"
        "    return F.softplus(-beta * (chosen - rejected))\n"
    )
    squared_hinge = (
        "import torch\n"
        "def loss_fn(pc, pr, rc, rr, beta):\n"
        "    margin = beta * ((pc - pr) - (rc - rr))\n"
        "    return torch.relu(1.0 - margin) ** 2\n"
    )
    script = [
        {"reply": "As an AI language model I would love to help, but first let me think about losses."},
        {
            "reply": '{"thought": "a smooth hinge", "name": "cut_short", "code": "def loss_fn(policy_chosen_logps, pol'
        },
        _reply("shell_loss", malicious),
        _reply("file_loss", still_malicious),  # the repair round's answer
        _reply("dpo", dpo_in_disguise),  # named like the baseline, too
        {"status": 500},
        {"delay": 4.0, "reply": "too late"},
        {"truncated": True},
        _reply("squared_hinge", squared_hinge),
    ]
    with FakeLLM(script) as server:
        config = recipe(
            preset="tiny",
            generations=1,
            population=5,
            proposers={"symbolic": False, "repair_rounds": 1},
            llm={"base_url": server.base_url, "model": "fake", "timeout_s": 2.0, "max_tries": 4},
        )
        run_dir = tmp_path / "run"
        proc = launch(["--config", str(config), "--run-dir", str(run_dir)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not marker.exists()

    rows = Archive(run_dir / "archive.sqlite").all()
    by_name = {r.name or f"#{r.id}": r for r in rows}
    assert [r.status for r in rows] == ["done", "unparseable", "unparseable", "invalid", "duplicate", "done"]
    baseline = rows[0]
    assert baseline.name == "dpo" and baseline.fitness is not None
    assert "no JSON object" in rows[1].reason
    assert "truncated" in rows[2].reason
    shell = by_name["shell_loss"]  # a repaired candidate keeps its row and name; its code is the last attempt
    assert shell.status == "invalid" and shell.repair_round == 1 and shell.reason.startswith("[policy]")
    assert "open(" in shell.code and shell.llm_tokens_in == 200
    duplicate = by_name["dpo_2"]  # the baseline keeps its name; the proposal's is suffixed
    assert duplicate.duplicate_of == baseline.id and "dpo" in duplicate.reason
    trained = by_name["squared_hinge"]
    assert trained.status == "done" and trained.fitness is not None and trained.stderr is not None
    faults = trained.metrics["llm_faults"]
    assert len(faults) == 3 and "InternalServerError" in faults[0] and "Timeout" in faults[1]
    assert (
        trained.llm_tokens_in == 100 and sum(r.llm_tokens_in for r in rows) == 600
    )  # 6 replies were completions
    assert "squared_hinge" in proc.stdout and "Discovered losses" in proc.stdout
