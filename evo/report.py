"""A run's results as one self-contained HTML page: the leaderboard, best fitness per generation, the shapes f(x)
and f'(x) of the top losses next to DPO's, their training curves and the status breakdown.

    python -m evo.leaderboard RUN_DIR --html report.html

No network: inline CSS, plots as inline base64 PNG, and a Content-Security-Policy that refuses every fetch but
data: images, so the page opens offline and archived text (LLM-written names, code and errors, all escaped)
cannot load anything."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evo.archive import Archive, Candidate
from evo.config import SearchConfig, load_config
from evo.ranking import Row, confirmed_cell, leaderboard, reference_baseline
from evo.report_plots import (
    SHAPE_CORE,
    SHAPE_SPAN,
    STATUS_COLOURS,
    fitness_png,
    shapes,
    shapes_png,
    status_png,
    training_png,
)
from evo.status import FINAL, Status

SHAPES_TOP = 5  # losses drawn next to DPO
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1180px;
       color: #222; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 4px; } h2 { margin-top: 32px; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: 0.9em; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; background: #fafafa; }
.card b { display: block; font-size: 1.25em; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 0.85em; white-space: pre-wrap; }
img { max-width: 100%; display: block; margin: 8px 0; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; color: white; font-size: 0.85em; }
.note { color: #555; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class GenerationStats:
    generation: int
    candidates: int
    done: int
    best: float | None  # best fitness among the generation's finished candidates
    best_so_far: float | None  # best fitness up to and including this generation


def generation_stats(candidates: Sequence[Candidate]) -> list[GenerationStats]:
    out: list[GenerationStats] = []
    best_so_far: float | None = None
    for generation in sorted({c.generation for c in candidates}):
        members = [c for c in candidates if c.generation == generation]
        scores = [c.fitness for c in members if c.status == Status.DONE and c.fitness is not None]
        best = max(scores) if scores else None
        if best is not None and (best_so_far is None or best > best_so_far):
            best_so_far = best
        out.append(GenerationStats(generation, len(members), len(scores), best, best_so_far))
    return out


def run_config(run_dir: Path) -> SearchConfig:
    """The run's saved config (``config.yaml``), or the defaults for an archive without one."""
    path = run_dir / "config.yaml"
    return load_config(path) if path.exists() else SearchConfig()


def _e(value: object) -> str:
    return html.escape(str(value))


def _num(value: float | None, digits: int = 4, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _status(status: str) -> str:
    return f'<span class="status" style="background:{STATUS_COLOURS[status]}">{_e(status)}</span>'


def _img(png: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{png}" alt="{_e(alt)}">'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _code(candidate: Candidate) -> str:
    thought = f'<p class="note">{_e(candidate.thought)}</p>' if candidate.thought else ""
    return f"<details><summary>code</summary>{thought}<pre>{_e(candidate.code)}</pre></details>"


def _leaderboard(rows: Sequence[Row], by_id: dict[int, Candidate], reference: str) -> str:
    if not rows:
        return '<p class="note">No candidate has finished training yet.</p>'
    body = []
    for r in rows:
        c = by_id[r.id]
        delta = _num(r.delta_vs_dpo, sign=True)
        if r.delta_stderr is not None:
            delta += f" &plusmn; {_num(r.delta_stderr)}"
        train_s = c.timings.get("train_s")
        body.append(
            [
                str(r.rank),
                str(r.id),
                _e(r.name),
                f"{_num(r.fitness)} &plusmn; {_num(r.stderr)}",
                delta,
                _e(confirmed_cell(r)).replace("+-", "&plusmn;"),
                str(r.generation),
                _e(r.proposer),
                "-" if train_s is None else f"{train_s:.0f}",
                _code(c),
            ]
        )
    headers = [
        "rank",
        "id",
        "name",
        "fitness",
        f"delta vs {_e(reference)} (paired)",
        "confirmed vs DPO (fresh seeds and prompts, Holm p)",
        "gen",
        "proposer",
        "train s",
        "loss",
    ]
    return _table(headers, body, numeric=(0, 1, 3, 4, 6, 8))


def _generations(stats: Sequence[GenerationStats]) -> str:
    rows = [
        [str(s.generation), str(s.candidates), str(s.done), _num(s.best), _num(s.best_so_far)] for s in stats
    ]
    return _table(
        ["generation", "candidates", "trained", "best of generation", "best so far"], rows, range(5)
    )


def _statuses(counts: dict[str, int], spend: dict) -> str:
    rows = [[_status(s), str(counts[s])] for s in Status if counts.get(s)]
    rows.append(["all", str(sum(counts.values()))])
    spent = (
        f'<p class="note">LLM: {spend["tokens_in"]} tokens in, {spend["tokens_out"]} out, '
        f"${spend['cost_usd']:.4f}</p>"
    )
    return _table(["status", "candidates"], rows, numeric=(1,)) + spent


def _not_trained(candidates: Sequence[Candidate]) -> str:
    rejected = [c for c in candidates if c.status in FINAL and c.status != Status.DONE]
    if not rejected:
        return ""
    rows = []
    for c in rejected:
        reason = c.reason or ""
        if c.duplicate_of is not None:
            reason = f"duplicate of #{c.duplicate_of}: {reason}"
        rows.append(
            [
                str(c.id),
                str(c.generation),
                _e(c.proposer),
                _e(c.name),
                _status(c.status),
                f"<pre>{_e(reason[:1500])}</pre>",
            ]
        )
    table = _table(["id", "gen", "proposer", "name", "status", "reason"], rows, numeric=(0, 1))
    return f"<details><summary>{len(rejected)} candidates not trained or failed, with reasons</summary>{table}</details>"


def _sandbox(missing: tuple[str, ...] | None) -> str:
    if missing is None:
        return "not recorded"
    return f"weaker: without {_e(', '.join(missing))}" if missing else "fully isolated"


def _cards(
    config: SearchConfig,
    candidates: Sequence[Candidate],
    rows: Sequence[Row],
    spend: dict,
    isolation_missing: tuple[str, ...] | None,
) -> str:
    best = f"{rows[0].fitness:.4f} ({_e(rows[0].name)})" if rows else "-"
    tested = [r for r in rows if r.p_holm is not None]
    better = ", ".join(_e(r.name) for r in tested if r.confirmed) or "none"
    confirmed = f"{better} (of {len(tested)} confirmed on fresh seeds)" if tested else "not run (evo.confirm)"
    items = [
        ("preset", _e(config.preset)),
        ("policy", _e(config.training.model)),
        ("fitness", _e(config.fitness.kind)),
        ("beta", f"{config.training.beta:g}"),
        ("candidates", str(len(candidates))),
        ("best", best),
        ("better than DPO", confirmed),
        ("LLM cost", f"${spend['cost_usd']:.4f}"),
        ("sandbox", _sandbox(isolation_missing)),
    ]
    return (
        '<div class="cards">' + "".join(f'<div class="card">{k}<b>{v}</b></div>' for k, v in items) + "</div>"
    )


def render_report(archive: Archive, config: SearchConfig, title: str, top: int | None = None) -> str:
    """The page as a string; ``top`` limits the leaderboard table (the plots use the best ``SHAPES_TOP``)."""
    candidates = archive.all()
    by_id = {c.id: c for c in candidates}
    rows, counts = leaderboard(archive, top, config.fitness.reference_baseline)
    spend = archive.llm_spend()
    reference = reference_baseline(candidates, config.fitness.reference_baseline)
    done = [c for c in candidates if c.status == Status.DONE and c.fitness is not None]
    best = [by_id[r.id] for r in rows if reference is None or r.id != reference.id][:SHAPES_TOP]
    beta = config.training.beta
    curves, errors = shapes(best, beta)
    shape_errors = "".join(f"<li>{_e(label)}: {_e(message)}</li>" for label, message in errors.items())
    trained = ([reference] if reference is not None else []) + best
    sections = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">generated {time.strftime("%Y-%m-%d %H:%M:%S")} from {_e(archive.path)}</p>',
        _cards(config, candidates, rows, spend, archive.isolation_missing()),
        "<h2>Leaderboard</h2>",
        _leaderboard(rows, by_id, config.fitness.reference_baseline),
        "<h2>Best fitness per generation</h2>",
        _img(fitness_png(done, reference.fitness if reference else None), "fitness by generation"),
        _generations(generation_stats(candidates)),
        "<h2>Loss shapes</h2>",
        f'<p class="note">The top {len(best)} losses next to DPO (dashed) over the log-ratio margin '
        "x = (log &pi;(y<sub>w</sub>) &minus; log &pi;(y<sub>l</sub>)) &minus; (log &pi;<sub>ref</sub>(y<sub>w</sub>) "
        f"&minus; log &pi;<sub>ref</sub>(y<sub>l</sub>)), with &beta; = {beta:g} from the run's config, "
        f"|&beta;x| &le; {SHAPE_SPAN:g}; f'(x) by autograd. A loss that lowers f as x grows pushes the "
        f"chosen answer up. The frame shows DPO whole and every loss over |&beta;x| &le; {SHAPE_CORE:g}; a curve "
        "that leaves it keeps going. Length-normalised losses are drawn with completions of one token (lengths 1), "
        "token-level losses along the summed margin with one-token completions (per-token KL 0).</p>",
        _img(shapes_png(curves, beta), "loss shapes f(x) and f'(x)"),
        f'<ul class="note">{shape_errors}</ul>' if shape_errors else "",
        "<h2>Training curves</h2>",
        _img(training_png(trained), "training loss curves"),
        "<h2>Status breakdown</h2>",
        _img(status_png(counts), "status breakdown"),
        _statuses(counts, spend),
        _not_trained(candidates),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n'
        + "\n".join(s for s in sections if s)
        + "\n</body></html>\n"
    )


def write_report(archive: Archive, run_dir: Path, path: Path, top: int | None = None) -> Path:
    """Write the report of the run in ``run_dir`` (its archive open as ``archive``) to ``path``."""
    page = render_report(archive, run_config(run_dir), f"Loss search {run_dir.resolve().name}", top)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
