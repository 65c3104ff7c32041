"""Validate candidate loss source: static policy, then the isolated gradient tests; plus its novelty keys.

Python API: `validate_source(source, pool=pool)` (pass a started `SandboxPool` to reuse warm zygotes across
candidates). CLI: `python -m sandbox.validate FILE [--json]` exits 0 when valid, 1 when invalid, 2 on a usage
error; `--json` prints {"valid", "stage", "error", "fingerprint", "seconds"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from sandbox.executor import SandboxPool, ZygoteError
from sandbox.policy import check_policy, format_violations


@dataclass(frozen=True)
class ValidationResult:
    """The verdict on one candidate: `stage` names the first stage it failed ("policy", "execution",
    "gradient_tests"), None when valid."""

    valid: bool
    stage: str | None
    error: str | None
    fingerprint: str | None
    canonical_form: str | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON object."""
        return {
            "valid": self.valid,
            "stage": self.stage,
            "error": self.error,
            "fingerprint": self.fingerprint,
            "seconds": round(self.seconds, 4),
        }


def validate_source(
    source: str, *, entry: str = "loss_fn", pool: SandboxPool | None = None
) -> ValidationResult:
    """Validate `source` (the sequence-level contract); never raises for anything the candidate does.

    Without `pool` a temporary one is started and closed (seconds); the search loop passes its own.
    """
    started = time.perf_counter()
    violations = check_policy(source, entry=entry)
    if violations:
        return ValidationResult(
            False, "policy", format_violations(violations), None, None, time.perf_counter() - started
        )
    if pool is None:
        with SandboxPool() as temporary:
            result = temporary.execute(source, entry)
    else:
        result = pool.execute(source, entry)
    return ValidationResult(
        result.valid,
        result.stage,
        result.error,
        result.fingerprint,
        result.canonical_form,
        time.perf_counter() - started,
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox.validate", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="file holding the loss source (sequence-level contract)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--entry", default="loss_fn", help="name of the loss function (default: loss_fn)")
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
        print(json.dumps(result.to_json()))
    elif result.valid:
        print(f"valid: fingerprint {result.fingerprint} ({result.seconds:.2f} s)")
    else:
        print(f"invalid ({result.stage}): {result.error}")
    return 0 if result.valid else 1


if __name__ == "__main__":
    sys.exit(main())
