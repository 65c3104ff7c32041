"""Validate candidate loss source: static policy, then tracing and the gradient tests in isolated children.

Python API: `validate_source(source, pool=pool)` (pass a started `SandboxPool` to reuse warm zygotes across
candidates); a valid result carries the traced graph (`result.graph`, see `sandbox.graph`), from which
`sandbox.build_loss` rebuilds the loss anywhere without running the source. CLI: `python -m sandbox.validate
FILE [--json] [--graph]` exits 0 when valid, 1 when invalid, 2 on a usage error; `--json` prints {"valid",
"stage", "error", "fingerprint", "canonical_form", "isolation_missing", "seconds"} (and "graph" with --graph).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

from sandbox.contract import ENTRIES
from sandbox.executor import SandboxPool, ZygoteError
from sandbox.graph import GraphError
from sandbox.graph_decode import decode_graph
from sandbox.policy import check_policy, format_violations


@dataclass(frozen=True)
class ValidationResult:
    """The verdict on one candidate: `stage` names the first stage it failed ("policy", "execution", "trace",
    "gradient_tests"), None when valid. `graph` is the traced graph's JSON (whenever tracing succeeded);
    `isolation_missing` lists the isolation properties the sandbox children lacked on this machine."""

    valid: bool
    stage: str | None
    error: str | None
    fingerprint: str | None
    canonical_form: str | None
    seconds: float
    graph: dict[str, Any] | None = None
    isolation_missing: tuple[str, ...] = ()
    cpu_seconds: float = 0.0  # CPU time spent in the sandbox processes (load-independent cost)

    def to_json(self, with_graph: bool = False) -> dict[str, Any]:
        """The CLI's JSON object."""
        payload = {
            "valid": self.valid,
            "stage": self.stage,
            "error": self.error,
            "fingerprint": self.fingerprint,
            "canonical_form": self.canonical_form,
            "isolation_missing": list(self.isolation_missing),
            "seconds": round(self.seconds, 4),
        }
        return {**payload, "graph": self.graph} if with_graph else payload


def entry_of(source: str) -> str:
    """The entry function a candidate defines: `token_loss_fn` (token contract) when it defines that and no
    `loss_fn`, else `loss_fn` (sequence contract; the policy check reports a missing one)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return "loss_fn"
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    return "token_loss_fn" if "token_loss_fn" in defined and "loss_fn" not in defined else "loss_fn"


def validate_source(
    source: str, *, entry: str | None = None, pool: SandboxPool | None = None, contract: str | None = None
) -> ValidationResult:
    """Validate `source` against a loss contract; never raises for anything the candidate does.

    Without `entry` the candidate's own entry function names its contract (`entry_of`, `contract.ENTRIES`);
    without `contract`, the entry's (sequence for any other name: registry functions validate under their own
    name). Without `pool` a temporary one is started and closed (seconds); the search loop passes its own.
    """
    entry = entry or entry_of(source)
    contract = contract or ENTRIES.get(entry, "sequence")
    started = time.perf_counter()
    violations = check_policy(source, entry=entry)
    if violations:
        missing = pool.isolation_missing if pool is not None else ()
        return ValidationResult(
            False,
            "policy",
            format_violations(violations),
            None,
            None,
            time.perf_counter() - started,
            isolation_missing=missing,
        )
    if pool is None:
        with SandboxPool() as temporary:
            result = temporary.execute(source, entry, contract)
    else:
        result = pool.execute(source, entry, contract)
    graph = result.graph
    if graph is not None:
        try:
            decode_graph(graph)  # the parent's own check of what the children sent back
        except GraphError as exc:
            graph, result = None, replace(result, valid=False, stage="trace", error=f"invalid graph: {exc}")
    return ValidationResult(
        result.valid,
        result.stage,
        result.error,
        result.fingerprint if result.valid else None,
        result.canonical_form if result.valid else None,
        time.perf_counter() - started,
        graph=graph,
        isolation_missing=result.isolation_missing,
        cpu_seconds=result.cpu_seconds,
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox.validate", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="file holding the loss source (loss_fn: sequence, token_loss_fn: token)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--graph", action="store_true", help="include the traced graph in the JSON object")
    parser.add_argument(
        "--entry", default=None, help="name of the loss function (default: loss_fn or token_loss_fn)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        with open(args.file, encoding="utf-8") as handle:
            source = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        result = validate_source(source, entry=args.entry)
    except ZygoteError as exc:
        print(f"the sandbox could not start: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json(with_graph=args.graph)))
    elif result.valid:
        print(f"valid: fingerprint {result.fingerprint} ({result.seconds:.2f} s)")
    else:
        print(f"invalid ({result.stage}): {result.error}")
    return 0 if result.valid else 1


if __name__ == "__main__":
    sys.exit(main())
