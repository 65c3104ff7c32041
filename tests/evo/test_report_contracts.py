"""The report's loss-shape plot for losses beyond the plain margin: a length-normalised graph is drawn with lengths
1, a token-level one (graph or registry) along the summed margin with one-token completions, and a loss that needs
inputs no margin fixes is listed with the reason."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from evo.archive import Candidate
from evo.report_plots import margin_grid, shapes
from tests.evo.graphs import validated_graph
from tests.sandbox.contract_sources import SIMPO_LIKE, TOKEN_DPO

BETA = 0.1


def _candidate(name: str, graph: str | None = None, loss: str | None = None) -> Candidate:
    return Candidate(
        id=3, generation=1, proposer="llm", status="done", name=name, code="", graph=graph, loss=loss
    )


def test_token_level_and_length_losses_are_drawn_along_the_margin(sandbox_pool):
    candidates = [
        _candidate("token_dpo", validated_graph(TOKEN_DPO, sandbox_pool)),
        _candidate("simpo_like", validated_graph(SIMPO_LIKE, sandbox_pool)),
        _candidate("tdpo", loss="tdpo1"),
        _candidate("spa", loss="spa"),
    ]
    curves, errors = shapes(candidates, BETA)
    labels = [c.label for c in curves]
    assert labels == [
        "DPO",
        "#3 token_dpo (token-level: one-token completions)",
        "#3 simpo_like (lengths 1)",
        "#3 tdpo (token-level: one-token completions)",
    ]
    x = margin_grid(BETA).double()
    dpo = F.softplus(-BETA * x)
    for curve in (curves[1], curves[3]):  # per-token DPO and TDPO (KL 0) are DPO along the summed margin
        torch.testing.assert_close(torch.from_numpy(curve.values), dpo, atol=1e-5, rtol=1e-5)
    simpo = F.softplus(-(BETA * x - 0.5))  # lengths 1: beta * (x - 0) - 0.5
    torch.testing.assert_close(torch.from_numpy(curves[2].values), simpo, atol=1e-5, rtol=1e-5)
    assert list(errors) == ["#3 spa"] and "extrapolated" in errors["#3 spa"]
