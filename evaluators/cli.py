"""Pieces shared by the evaluator command lines."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from evaluators.fitness import Fitness


def print_fitness(label: str, fitness: Fitness, output_dir: Path) -> Path:
    """Write `output_dir/result.json` and print the score line; returns the result path."""
    path = output_dir / "result.json"
    fitness.write(path)
    Console().print(
        f"[bold]{label}[/bold]: {fitness.score:.4f} ± {fitness.stderr:.4f} (n={fitness.n}) -> {path}"
    )
    return path
