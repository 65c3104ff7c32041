"""Diverse MBR selection on hand-built similarity matrices."""

import itertools

import numpy as np
import pytest

from trainer.pipelines.aepo_select import greedy, mbr_utility, objective, select_diverse

# Response 0 agrees with everyone (highest MBR utility) but so do 1-0, 2-0 and 3-0; responses 1 and 2 disagree
# with each other. Utilities: u0 = 0.8, u1 = u2 = 0.5, u3 = 2/3. With L = 1:
#   f({1, 2}) = 0.5 - 0.1 = 0.4 (the optimum);
#   f({0, 3}) = 0.7333 - 0.8 = -0.0667 (greedy: the best single response 0, then its least bad partner);
#   f({1, 3}) = f({2, 3}) = 0.5833 - 0.6 = -0.0167 (local search passes through one of these).
TRAP = np.array(
    [
        [1.0, 0.8, 0.8, 0.8],
        [0.8, 1.0, 0.1, 0.6],
        [0.8, 0.1, 1.0, 0.6],
        [0.8, 0.6, 0.6, 1.0],
    ]
)


def brute_force(similarity, k, penalty):
    subsets = itertools.combinations(range(similarity.shape[0]), k)
    return list(max(subsets, key=lambda s: objective(similarity, s, penalty)))


def test_utility_excludes_the_diagonal():
    assert mbr_utility(TRAP) == pytest.approx([0.8, 0.5, 0.5, 2 / 3])


def test_hand_built_matrix_optimum_is_found_where_greedy_alone_fails():
    assert objective(TRAP, [1, 2], 1.0) == pytest.approx(0.4)
    assert objective(TRAP, [0, 3], 1.0) == pytest.approx(0.8 / 2 + 1 / 3 - 0.8)
    assert sorted(greedy(TRAP, 2, 1.0)) == [0, 3]
    assert select_diverse(TRAP, 2, 1.0) == [1, 2] == brute_force(TRAP, 2, 1.0)


def test_without_penalty_the_k_most_central_responses_win():
    assert select_diverse(TRAP, 2, 0.0) == [0, 3]
    assert select_diverse(TRAP, 3, 0.0) == [0, 1, 3]  # u1 = u2: the tie goes to the lower index


@pytest.mark.parametrize("diagonal", [0.0, 1.0, 7.5])
def test_the_diagonal_never_matters(diagonal):
    changed = TRAP.copy()
    np.fill_diagonal(changed, diagonal)
    for subset in itertools.combinations(range(4), 2):
        assert objective(changed, subset, 1.0) == pytest.approx(objective(TRAP, subset, 1.0))
    assert select_diverse(changed, 2, 1.0) == [1, 2]


def test_selection_neither_mutates_the_matrix_nor_changes_between_evaluations():
    matrix = TRAP.copy()
    first = objective(matrix, [0, 1], 1.0)
    select_diverse(matrix, 2, 1.0)
    assert np.array_equal(matrix, TRAP)
    assert (
        objective(matrix, [0, 1], 1.0) == first
    )  # the published code zeroed the diagonal after the first call


@pytest.mark.parametrize("penalty", [0.0, 0.5, 2.0])
def test_result_is_swap_optimal_and_no_worse_than_greedy(penalty):
    rng = np.random.default_rng(0)
    for _ in range(15):
        points = rng.normal(size=(7, 4))
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        similarity = points @ points.T
        chosen = select_diverse(similarity, 3, penalty)
        value = objective(similarity, chosen, penalty)
        assert value >= objective(similarity, greedy(similarity, 3, penalty), penalty) - 1e-12
        for out, into in itertools.product(chosen, set(range(7)) - set(chosen)):
            swapped = [into if i == out else i for i in chosen]
            assert objective(similarity, swapped, penalty) <= value + 1e-9
        if penalty == 0.0:
            assert chosen == brute_force(similarity, 3, 0.0)


def test_k_of_one_and_k_above_n_are_clear_errors():
    with pytest.raises(ValueError, match="num_annotations must be >= 2"):
        select_diverse(TRAP, 1, 1.0)
    with pytest.raises(ValueError, match="exceeds the 4 responses"):
        select_diverse(TRAP, 5, 1.0)
    with pytest.raises(ValueError, match="square"):
        select_diverse(TRAP[:3], 2, 1.0)
