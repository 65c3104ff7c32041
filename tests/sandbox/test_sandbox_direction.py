"""The online direction check: the sign of dL/d(chosen and rejected log-ratio) on a batch, and the monitor."""

import pytest
import torch
import torch.nn.functional as F

from sandbox.direction import Direction, DirectionMonitor, direction


def _dpo(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - pr) - (rc - rr)))


def _reversed(pc, pr, rc, rr, beta):
    return -F.logsigmoid(-beta * ((pc - pr) - (rc - rr)))


def _batch(requires_grad=False):
    gen = torch.Generator().manual_seed(0)
    tensors = [-torch.rand(8, generator=gen) * 50 for _ in range(4)]
    return [t.requires_grad_(requires_grad) for t in tensors]


def test_direction_signs_and_values():
    pc, pr, rc, rr = _batch()
    reading = direction(_dpo, pc, pr, rc, rr, 0.1)
    z = 0.1 * ((pc - pr) - (rc - rr))
    assert reading.chosen == pytest.approx((-0.1 * torch.sigmoid(-z)).mean().item(), rel=1e-5)
    assert reading.rejected == pytest.approx(-reading.chosen, rel=1e-5)
    assert reading.follows_preference and not reading.against_preference
    assert direction(_reversed, pc, pr, rc, rr, 0.1).against_preference


def test_direction_leaves_the_training_graph_alone():
    pc, pr, rc, rr = _batch(requires_grad=True)
    training_loss = _dpo(pc, pr, rc, rr, 0.1).mean()
    direction(_dpo, pc, pr, rc, rr, 0.1)
    assert pc.grad is None
    training_loss.backward()  # still differentiable once
    assert pc.grad is not None


def test_the_monitor_stops_after_patience_reversed_batches_in_a_row():
    monitor = DirectionMonitor(patience=3)
    good, bad = Direction(-0.1, 0.1), Direction(0.2, -0.2)
    assert not any(monitor.update(r) for r in (bad, bad, good, bad, bad))
    assert monitor.update(bad)
    assert monitor.stopped and "3 batches in a row (up to batch 6)" in monitor.reason
    with pytest.raises(ValueError):
        DirectionMonitor(patience=0)
