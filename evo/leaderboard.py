"""The discovered-loss leaderboard of a run.

    python -m evo.leaderboard RUN_DIR [--json] [--top N] [--html report.html]

Rank, name, the highest fidelity rung reached (``evo.rungs``; candidates rank by it first), fitness +- stderr at
that rung, the paired difference to the reference baseline at the same rung (DPO unless the run's
``fitness.reference_baseline`` or ``--reference`` names another; per-item differences on the same held-out items,
with their standard error; the column and the JSON's ``reference`` name it), the confirmed difference to DPO on
fresh seeds and prompts with its Holm-adjusted p where ``evo.confirm`` ran (a candidate is called better than DPO
only when confirmed), generation, proposer; then a status summary with each proposer's shares of proposals parsed,
passing the sandbox and novel (``evo.proposal_shares``), a warning when the run's
sandbox lacked isolation properties (``Archive.isolation_missing``), and what stopped a proposer or the run early
(a spent LLM budget, a server that could not serve, the circuit breaker)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from evo.archive import Archive
from evo.proposal_shares import ProposalShares, proposal_shares, shares_lines
from evo.ranking import REFERENCE_BASELINE, Row, confirmed_cell, leaderboard


def run_notes(archive: Archive) -> list[str]:
    """What the search recorded about the run as a whole: disabled proposers, an early end, a stop."""
    notes = [
        f"{arm} proposer disabled: {why}" for arm, why in (archive.note("disabled_proposers") or {}).items()
    ]
    for key in ("proposing_ended", "circuit_breaker"):
        if archive.note(key):
            notes.append(
                ("stopped by the circuit breaker: " if key == "circuit_breaker" else "") + archive.note(key)
            )
    return notes


def isolation_line(missing: tuple[str, ...] | None) -> str | None:
    """The warning a run whose sandbox lacked isolation properties carries beside its results (None: no warning)."""
    if not missing:
        return None
    return f"sandbox: validated WITHOUT {', '.join(missing)}: weaker isolation than designed"


def render(
    rows: list[Row],
    counts: dict[str, int],
    spend: dict,
    console: Console,
    notes: Sequence[str] = (),
    isolation_missing: tuple[str, ...] | None = None,
    shares: Mapping[str, ProposalShares] | None = None,
    reference: str = REFERENCE_BASELINE,
) -> None:
    table = Table(title="Discovered losses")
    for column in (
        "rank",
        "name",
        "rung",
        "fitness",
        f"delta vs {reference}",
        "confirmed vs DPO",
        "gen",
        "proposer",
    ):
        table.add_column(column, justify="right" if column in ("rank", "rung", "gen") else "left")
    for r in rows:
        if r.delta_vs_dpo is None:
            delta = "-"
        elif r.delta_stderr is None:
            delta = f"{r.delta_vs_dpo:+.4f}"
        else:
            delta = f"{r.delta_vs_dpo:+.4f} +- {r.delta_stderr:.4f}"
        rung = "-" if r.rung is None else str(r.rung)
        table.add_row(
            str(r.rank),
            r.name,
            rung,
            f"{r.fitness:.4f} +- {r.stderr:.4f}",
            delta,
            confirmed_cell(r),
            str(r.generation),
            r.proposer,
        )
    console.print(table)
    summary = ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))
    console.print(f"status: {summary or 'no candidates'}")
    for line in shares_lines(shares or {}):
        console.print(f"  {line}")
    warning = isolation_line(isolation_missing)
    if warning:
        console.print(warning, style="bold red", markup=False)
    console.print(f"LLM: {spend['tokens_in']} tokens in, {spend['tokens_out']} out, ${spend['cost_usd']:.4f}")
    for note in notes:
        console.print(Text(note), soft_wrap=True)  # plain text (log lines may hold [brackets]), not wrapped


def run_reference(run_dir: Path) -> str:
    """The reference baseline of a run: its saved config's ``fitness.reference_baseline``, DPO without one."""
    saved = run_dir / "config.yaml"
    if not saved.exists():
        return REFERENCE_BASELINE
    fitness = (yaml.safe_load(saved.read_text()) or {}).get("fitness") or {}
    return str(fitness.get("reference_baseline") or REFERENCE_BASELINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evo.leaderboard", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--top", type=int, default=None)
    parser.add_argument("--html", metavar="PATH", help="also write a self-contained HTML report with plots")
    parser.add_argument(
        "--reference", help="baseline the paired deltas compare with (default: the run's config)"
    )
    args = parser.parse_args(argv)
    path = Path(args.run_dir) / "archive.sqlite"
    if not path.exists():
        print(f"no archive at {path}", file=sys.stderr)
        return 2
    archive = Archive(path)
    reference = args.reference or run_reference(Path(args.run_dir))
    rows, counts = leaderboard(archive, args.top, reference)
    spend = archive.llm_spend()
    missing = archive.isolation_missing()
    shares = proposal_shares(archive.all())
    if args.json:
        print(
            json.dumps(
                {
                    "rows": [asdict(r) for r in rows],
                    "status_counts": counts,
                    "llm": spend,
                    "proposal_shares": {p: asdict(s) for p, s in shares.items()},
                    "notes": run_notes(archive),
                    "reference": reference,
                    "sandbox_isolation_missing": None if missing is None else list(missing),
                },
                indent=2,
            )
        )
    else:
        render(rows, counts, spend, Console(), run_notes(archive), missing, shares, reference)
    if args.html:
        from evo.report import write_report  # matplotlib: loaded only when a report is asked for

        print(
            f"report: {write_report(archive, Path(args.run_dir), Path(args.html), args.top)}", file=sys.stderr
        )
    archive.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
