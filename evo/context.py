"""The prompt context built from the archive: best so far, most recent, recent failures.

Prompts are rebuilt from the archive on every call, so a resumed run's LLM sees exactly what it would have seen."""

from __future__ import annotations

from importlib import resources

from evo.archive import Archive, Candidate
from evo.config import ProposerConfig

MAX_CODE_CHARS = 900


def template(name: str) -> str:
    return resources.files("evo.prompts").joinpath(f"{name}.txt").read_text(encoding="utf-8")


def _score(c: Candidate) -> str:
    if c.fitness is None:
        return "no fitness"
    return f"fitness {c.fitness:.4f} +- {c.stderr or 0:.4f}"


def _code(c: Candidate) -> str:
    code = c.code if len(c.code) <= MAX_CODE_CHARS else c.code[:MAX_CODE_CHARS] + "\n    # ... (truncated)"
    return "\n".join("    " + line for line in code.splitlines())


def _listing(candidates: list[Candidate], with_code: bool) -> str:
    if not candidates:
        return "(none yet)"
    lines = []
    for c in candidates:
        if with_code:
            lines.append(f"- {c.name} ({_score(c)}):\n{_code(c)}")
        else:
            lines.append(f"- {c.name or 'unnamed'} [{c.status}]: {(c.reason or '')[:300]}")
    return "\n".join(lines)


def proposal_messages(archive: Archive, config: ProposerConfig) -> list[dict[str, str]]:
    user = template("propose").format(
        top=_listing(archive.top(config.context_top_k), with_code=True),
        recent=_listing(archive.recent(config.context_recent), with_code=True),
        failures=_listing(archive.failures(config.context_failures), with_code=False),
    )
    return [{"role": "system", "content": template("system")}, {"role": "user", "content": user}]


def repair_messages(code: str, error: str) -> list[dict[str, str]]:
    user = template("repair").format(error=error[:1500], code=code[:3000])
    return [{"role": "system", "content": template("system")}, {"role": "user", "content": user}]
