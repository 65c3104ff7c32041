"""The report's figures, rendered by matplotlib's Agg canvas (no pyplot state) to base64 PNG for inline <img>, and
the loss shapes they draw.

A loss's shape is its value f(x) and slope f'(x) over the log-ratio margin x = (pi_c - pi_r) - (ref_c - ref_r),
evaluated with policy_chosen = x and the three other log-probs 0, the slope by autograd. The grid is one batch, so
a loss that couples the examples of a batch (batch statistics) draws the shape it has on that batch. A discovered
loss is drawn from its stored graph (rebuilt by the sandbox's trusted interpreter): no archived source runs here.

What is drawn for losses with more inputs than the margin (`along_margin`): a length-normalised loss with
completions of one token (lengths 1, so its per-token margin is x); a token-level loss with one-token completions
(each per-token tensor is the (batch, 1) column of its summed log-prob, masks 1, per-token KL 0), so the curve is
the loss along the summed margin; its label says so. A loss that needs inputs no margin fixes (SPA's extrapolated
log-probs) is listed with the reason instead of a curve."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from evo.archive import Candidate
from evo.status import Status
from trainer.losses import LossInputs, LossSpec, get_loss_spec
from trainer.losses.discovered import candidate_loss

SHAPE_SPAN = 4.0  # the margin grid covers beta * x in [-SHAPE_SPAN, SHAPE_SPAN]
SHAPE_POINTS = 401
SHAPE_CORE = 1.0  # the y range shows DPO whole and every loss over beta * x in [-SHAPE_CORE, SHAPE_CORE]
DPO_LOSS = "sigmoid"
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
STATUS_COLOURS = {
    Status.PROPOSED: "#9e9e9e",
    Status.UNPARSEABLE: "#8d6e63",
    Status.INVALID: "#e53935",
    Status.DUPLICATE: "#fb8c00",
    Status.TRAINING: "#1e88e5",
    Status.DONE: "#43a047",
    Status.FAILED: "#6d4c41",
}


@dataclass(frozen=True)
class Shape:
    """A loss evaluated on the margin grid: f(x) and f'(x)."""

    label: str
    margins: np.ndarray
    values: np.ndarray
    slopes: np.ndarray


def margin_grid(beta: float, points: int = SHAPE_POINTS) -> torch.Tensor:
    half = SHAPE_SPAN / beta
    return torch.linspace(-half, half, points)


def loss_shape(
    fn: Callable[..., torch.Tensor], margins: torch.Tensor, beta: float
) -> tuple[np.ndarray, np.ndarray]:
    """f(x) and f'(x) of a sequence-level loss at each margin x (non-finite values become NaN: gaps in a plot)."""
    x = margins.detach().clone().requires_grad_(True)
    zeros = torch.zeros_like(x)
    values = fn(x, zeros, zeros, zeros, beta)
    if not isinstance(values, torch.Tensor) or values.shape != x.shape:
        got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"the loss returned {got} for a batch of shape {tuple(x.shape)}")
    slopes = torch.autograd.grad(values.sum(), x, allow_unused=True)[0] if values.requires_grad else None
    slopes = torch.zeros_like(x) if slopes is None else slopes  # a loss that ignores x is flat

    def finite(t: torch.Tensor) -> np.ndarray:
        array = t.detach().double().numpy()
        return np.where(np.isfinite(array), array, np.nan)

    return finite(values), finite(slopes)


def loss_spec(candidate: Candidate) -> LossSpec:
    """The spec of a candidate: its registry loss (baselines) or the one its stored graph implies
    (``sandbox.graph.GraphError`` for a malformed graph)."""
    if candidate.loss is not None:
        return get_loss_spec(candidate.loss)
    if candidate.graph is None:
        raise ValueError("archived without a graph: resume the run to validate it again")
    return candidate_loss(candidate.name, candidate.graph, patience=0)


def along_margin(spec: LossSpec) -> Callable[..., torch.Tensor]:
    """The loss called like a sequence loss of the margin's four inputs (module docstring: lengths 1, one-token
    completions for a token-level loss)."""
    if spec.extrapolation_param is not None:
        raise ValueError(
            f"{spec.name} reads the extrapolated model's log-probs: it has no shape over the margin alone"
        )
    loss = spec.build()
    if spec.level == "sequence":
        if not spec.needs_lengths:
            return loss
        return lambda pc, pr, rc, rr, beta: loss(
            pc, pr, rc, rr, beta, chosen_lengths=torch.ones_like(pc), rejected_lengths=torch.ones_like(pr)
        )

    def one_token(pc, pr, rc, rr, beta):
        column = [t[:, None] for t in (pc, pr, rc, rr)]
        ones, kl = torch.ones_like(column[0]), torch.zeros_like(column[0]) if spec.needs_kl else None
        return loss(LossInputs(*column, ones, ones, chosen_kl=kl, rejected_kl=kl), beta)

    return one_token


def sequence_loss(candidate: Candidate) -> Callable[..., torch.Tensor]:
    """The candidate's loss as a function of the margin's four inputs and beta (``along_margin``)."""
    return along_margin(loss_spec(candidate))


def shape_note(spec: LossSpec) -> str:
    """What a curve of this loss shows, beyond the plain margin (empty for a plain sequence loss)."""
    if spec.level == "token":
        return " (token-level: one-token completions)"
    return " (lengths 1)" if spec.needs_lengths else ""


def shapes(candidates: Sequence[Candidate], beta: float) -> tuple[list[Shape], dict[str, str]]:
    """DPO's shape first, then each candidate's; candidates whose code cannot be evaluated go to the errors."""
    margins = margin_grid(beta)
    out = [Shape("DPO", margins.numpy(), *loss_shape(get_loss_spec(DPO_LOSS).build(), margins, beta))]
    errors: dict[str, str] = {}
    for c in candidates:
        label = f"#{c.id} {c.name}"
        try:
            spec = loss_spec(c)
            out.append(
                Shape(
                    label + shape_note(spec), margins.numpy(), *loss_shape(along_margin(spec), margins, beta)
                )
            )
        except Exception as err:  # an archived graph is data: a loss that breaks here is reported, not fatal
            errors[label] = f"{type(err).__name__}: {err}"[:300]
    return out, errors


def to_png(fig: Figure) -> str:
    """The figure as base64 PNG, for ``<img src="data:image/png;base64,...">``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight", facecolor="white")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plain(label: str) -> str:
    """A legend label shown as written: matplotlib would parse text between two '$' as math (and may fail)."""
    return label.replace("$", r"\$")


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])


def _view_limits(
    reference: np.ndarray, others: Sequence[np.ndarray], core: np.ndarray
) -> tuple[float, float]:
    """Y limits framing DPO's curve whole and every other curve near x = 0: a loss that explodes at the edges of
    the grid leaves the frame there instead of flattening the others; one offset far from DPO stays in view."""
    parts = [reference[np.isfinite(reference)]] + [a[core & np.isfinite(a)] for a in others]
    finite = np.concatenate(parts)
    low, high = float(finite.min()), float(finite.max())
    pad = 0.08 * (high - low) or 0.5
    return low - pad, high + pad


def shapes_png(curves: Sequence[Shape], beta: float) -> str:
    """f(x) and f'(x) side by side; ``curves[0]`` is DPO's (as ``shapes`` returns them)."""
    fig = Figure(figsize=(11, 4.2))
    value_ax, slope_ax = fig.subplots(1, 2)
    for index, curve in enumerate(curves):
        style = (
            {"color": "black", "linestyle": "--", "linewidth": 2.2}
            if index == 0
            else {"color": _PALETTE[(index - 1) % len(_PALETTE)], "linewidth": 1.6}
        )
        value_ax.plot(curve.margins, curve.values, label=_plain(curve.label), **style)
        slope_ax.plot(curve.margins, curve.slopes, label=_plain(curve.label), **style)
    dpo, others = curves[0], curves[1:]
    core = np.abs(beta * dpo.margins) <= SHAPE_CORE
    for ax, name, limits in (
        (value_ax, "f(x)", _view_limits(dpo.values, [c.values for c in others], core)),
        (slope_ax, "f'(x)", _view_limits(dpo.slopes, [c.slopes for c in others], core)),
    ):
        ax.set_ylim(*limits)
        ax.axvline(0.0, color="#bbbbbb", linewidth=0.8)
        ax.axhline(0.0, color="#bbbbbb", linewidth=0.8)
        ax.set_xlabel(f"log-ratio margin x   (beta = {beta:g})")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    value_ax.legend(fontsize=8, loc="best")
    return to_png(fig)


def fitness_png(done: Sequence[Candidate], reference: float | None) -> str:
    """Every finished candidate's fitness by generation, the best of each generation and the best so far."""
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    if not done:
        _empty(ax, "no finished candidates yet")
        return to_png(fig)
    rng = np.random.default_rng(0)
    generations = sorted({c.generation for c in done})
    xs = [c.generation + rng.uniform(-0.12, 0.12) for c in done]
    ax.errorbar(
        xs,
        [c.fitness for c in done],
        yerr=[c.stderr or 0.0 for c in done],
        fmt="o",
        color="#90a4ae",
        markersize=4,
        elinewidth=0.8,
        label="candidate (+- stderr)",
    )
    best = [max(c.fitness for c in done if c.generation == g) for g in generations]
    ax.plot(generations, best, "o-", color="#1e88e5", label="best of generation")
    ax.step(
        generations,
        np.maximum.accumulate(best),
        where="post",
        color="#43a047",
        linewidth=2,
        label="best so far",
    )
    if reference is not None:
        ax.axhline(reference, color="black", linestyle="--", linewidth=1, label="DPO")
    ax.set_xticks(generations)
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return to_png(fig)


def training_png(candidates: Sequence[Candidate]) -> str:
    """Training loss against step for the given candidates."""
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    drawn = [c for c in candidates if c.metrics.get("losses")]
    if not drawn:
        _empty(ax, "no training curves recorded")
        return to_png(fig)
    colour = 0  # the same order and colours as the shapes plot: DPO dashed black, the others from the palette
    for c in drawn:
        if c.loss == DPO_LOSS:
            style = {"color": "black", "linestyle": "--"}
        else:
            style = {"color": _PALETTE[colour % len(_PALETTE)]}
            colour += 1
        losses = c.metrics["losses"]
        ax.plot(range(1, len(losses) + 1), losses, label=_plain(f"#{c.id} {c.name}"), **style)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return to_png(fig)


def status_png(counts: Mapping[str, int]) -> str:
    present = [s for s in Status if counts.get(s)]
    fig = Figure(figsize=(8, 1.0 + 0.4 * max(1, len(present))))
    ax = fig.subplots()
    if not present:
        _empty(ax, "no candidates")
        return to_png(fig)
    values = [counts[s] for s in present]
    bars = ax.barh(present, values, height=0.6, color=[STATUS_COLOURS[s] for s in present])
    ax.bar_label(bars, padding=3)
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("candidates")
    ax.set_xlim(0, max(values) * 1.15)
    return to_png(fig)
