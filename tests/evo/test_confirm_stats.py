"""The confirmation's statistics against hand computations: Holm's adjustment and the paired difference over
seeds x items with its two-way cluster-robust standard error and one-sided p-value."""

import math

import pytest

from evo.confirm_store import Confirmation
from evo.stats import holm, one_sided_p, paired_over_seeds


def test_holm_against_a_hand_computation():
    # sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, 0.6]) == pytest.approx([0.4, 0.6])  # 0.2 * 2, then max(0.4, 0.6 * 1)
    assert holm([0.5, 0.9, 0.01]) == pytest.approx([1.0, 1.0, 0.03])  # capped at 1
    assert holm([]) == []


def test_paired_difference_with_item_clusters_against_a_hand_computation():
    candidate = [{"a": 1.0, "b": 0.5, "c": 0.2}, {"a": 0.8, "b": 0.4, "c": 0.3}]
    dpo = [{"a": 0.5, "b": 0.5, "c": 0.1}, {"a": 0.6, "b": 0.1, "c": 0.2}]
    # cells (seed x item): [0.5, 0.0, 0.1] and [0.2, 0.3, 0.1]; mean 1.2 / 6 = 0.2
    # item means 0.35, 0.15, 0.10: sum of squares about 0.2 = 0.035, variance 0.0175, of their mean 0.0175 / 3
    # seed means 0.2, 0.2: 0; cells: sum of squares 0.16, variance 0.032, of their mean 0.032 / 6
    # two-way: 0.0175 / 3 + 0 - 0.032 / 6 = 0.0005, below the item term, so floored at 0.0175 / 3
    result = paired_over_seeds(candidate, dpo)
    assert result.delta == pytest.approx(0.2)
    assert result.stderr == pytest.approx(math.sqrt(0.0175 / 3))
    assert (result.n_seeds, result.n_items) == (2, 3)
    # t = 0.2 / 0.076376 = 2.6186 with 2 degrees of freedom: P(T >= t) = (1 - t / sqrt(t^2 + 2)) / 2
    t = 0.2 / math.sqrt(0.0175 / 3)
    assert result.p_value == pytest.approx((1 - t / math.sqrt(t * t + 2)) / 2)


def test_the_two_way_variance_adds_the_seed_clusters():
    # seed effects +-0.1 on top of item effects 0.3, 0.0, -0.1, 0.2: cells [0.4, 0.1, 0.0, 0.3], [0.2, -0.1, -0.2, 0.1]
    candidate = [{"a": 0.4, "b": 0.1, "c": 0.0, "d": 0.3}, {"a": 0.2, "b": -0.1, "c": -0.2, "d": 0.1}]
    dpo = [dict.fromkeys("abcd", 0.0), dict.fromkeys("abcd", 0.0)]
    # mean 0.8 / 8 = 0.1
    # item means 0.3, 0.0, -0.1, 0.2: squares about 0.1 sum to 0.1 -> variance of their mean 0.1 / 3 / 4
    # seed means 0.2, 0.0: squares 0.02 -> 0.02 / 1 / 2
    # cells: squares about 0.1 sum to 0.28 -> 0.28 / 7 / 8 = 0.005
    v_item, v_seed, v_cell = 0.1 / 12, 0.02 / 2, 0.28 / 56
    result = paired_over_seeds(candidate, dpo)
    assert result.delta == pytest.approx(0.1)
    assert v_item + v_seed - v_cell > max(v_item, v_seed)  # the two-way term itself, not the floor
    assert result.stderr == pytest.approx(math.sqrt(v_item + v_seed - v_cell))  # sqrt(0.013333)


def test_pairing_uses_the_items_every_run_scored_and_needs_matching_seeds():
    result = paired_over_seeds([{"a": 1.0, "x": 9.0}], [{"a": 0.5, "y": -9.0}])
    assert (result.delta, result.n_items) == (0.5, 1)
    with pytest.raises(ValueError, match="same number"):
        paired_over_seeds([{"a": 1.0}], [{"a": 1.0}, {"a": 1.0}])
    with pytest.raises(ValueError, match="share no scored items"):
        paired_over_seeds([{"a": 1.0}], [{"b": 1.0}])


def test_one_sided_p_value_edges():
    assert one_sided_p(0.1, 0.1, 1000) == pytest.approx(0.1587, abs=1e-3)  # about the normal tail at z = 1
    assert one_sided_p(-0.1, 0.1, 1000) == pytest.approx(
        0.8413, abs=1e-3
    )  # one-sided: a loss is not evidence
    assert one_sided_p(0.1, 0.0, 5) == 0.0 and one_sided_p(0.0, 0.0, 5) == 1.0
    assert one_sided_p(0.1, 0.05, 0) == 1.0  # a single item: no evidence


def test_confirmed_only_with_a_positive_delta_below_the_holm_threshold():
    def summary(delta, p_holm):
        return Confirmation(1, 0, delta, 0.01, p_holm, p_holm, 2, 8, 2)

    assert summary(0.02, 0.049).confirmed
    assert not summary(0.02, 0.05).confirmed
    assert not summary(-0.02, 0.001).confirmed
    assert not summary(None, 1.0).confirmed
