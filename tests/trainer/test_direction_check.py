"""The online direction check around a graph loss: what it counts, when it stops, and that ranks stop together."""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from sandbox.contract import SEQUENCE
from sandbox.direction import Direction
from sandbox.interpreter import build_loss
from sandbox.tracer import trace_loss
from trainer.losses.discovered import CandidateTurned, DirectionCheckedLoss, _across_ranks, candidate_loss


def dpo(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - pr) - (rc - rr)))


def reversed_dpo(pc, pr, rc, rr, beta):
    return -F.logsigmoid(-beta * ((pc - pr) - (rc - rr)))


def _graph(function) -> str:
    """The graph's JSON as the sandbox's child makes it (traced here: these functions are the test's own)."""
    return json.dumps(trace_loss(function, SEQUENCE).to_json())


def _batch(requires_grad: bool = True) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    tensors = [-(torch.rand(8, generator=gen) * 100 + 10) for _ in range(4)]
    tensors[0].requires_grad_(requires_grad)
    tensors[1].requires_grad_(requires_grad)
    return tensors


def test_a_reversed_loss_is_stopped_after_patience_training_calls():
    loss = candidate_loss("reversed", _graph(reversed_dpo), patience=3).build()
    assert isinstance(loss, DirectionCheckedLoss)
    batch = _batch()
    with torch.no_grad():
        for _ in range(5):  # evaluation calls are not training batches
            loss(*batch, 0.1)
    for _ in range(5):
        loss(*_batch(requires_grad=False), 0.1)  # nor are calls on inputs that need no gradient
    loss(*batch, 0.1)
    loss(*batch, 0.1)
    with pytest.raises(CandidateTurned, match=r"on 3 batches in a row \(up to batch 3\)"):
        loss(*batch, 0.1)


def test_the_check_returns_the_graphs_values_and_leaves_training_alone():
    graph = _graph(dpo)
    spec = candidate_loss("dpo", graph, patience=1)
    loss = spec.build()
    batch = _batch()
    values = loss(*batch, 0.1)
    torch.testing.assert_close(values, build_loss(graph)(*batch, 0.1))
    assert batch[0].grad is None  # the check differentiated copies
    values.mean().backward()
    assert batch[0].grad is not None and (batch[0].grad < 0).all()
    for _ in range(50):
        loss(*batch, 0.1)  # DPO never turns
    assert spec.build().monitor is not loss.monitor  # every trainer gets its own monitor
    assert spec.source == graph and candidate_loss("dpo", None, patience=1) is None


def test_patience_zero_turns_the_check_off():
    loss = candidate_loss("reversed", _graph(reversed_dpo), patience=0).build()
    for _ in range(30):
        loss(*_batch(), 0.1)
    assert loss.monitor is None


def _rank(rank: int, init_file: str, readings: list[Direction], out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        agreed = _across_ranks(readings[rank], torch.device("cpu"))
        with open(f"{out}.{rank}", "w") as handle:
            json.dump([agreed.chosen, agreed.rejected], handle)
    finally:
        dist.destroy_process_group()


def test_ranks_average_their_readings_so_they_stop_together(tmp_path):
    readings = [Direction(0.3, -0.3), Direction(-0.1, 0.1)]  # rank 0 reversed, rank 1 following
    out = str(tmp_path / "agreed")
    mp.start_processes(_rank, args=(str(tmp_path / "init"), readings, out), nprocs=2, start_method="spawn")
    agreed = [json.loads((tmp_path / f"agreed.{rank}").read_text()) for rank in (0, 1)]
    assert agreed[0] == agreed[1] == pytest.approx([0.1, -0.1])
    assert (
        _across_ranks(readings[1], torch.device("cpu")) == readings[1]
    )  # no process group: the reading itself
