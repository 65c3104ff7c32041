"""The packages stay in layers without cycles: `lint-imports` keeps the contracts in pyproject.toml, and grimp
finds no import cycle between the layers nor between the children of any package.

The layers, top to bottom: evo, trainer.pipelines, evaluators, the trainer core (trainer without pipelines),
sandbox. trainer.pipelines sits above evaluators (it rewards with their checkers and judges) while the rest of
trainer sits below them, so trainer and evaluators are told apart at that grain: as whole packages they import
each other, through trainer.pipelines only."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("evo", "trainer", "evaluators", "sandbox")
LAYERS = ("evo", "trainer.pipelines", "evaluators", "trainer", "sandbox")  # most specific name first


def layer_of(module: str) -> str:
    return next(layer for layer in LAYERS if module == layer or module.startswith(layer + "."))


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def _imports(graph: grimp.ImportGraph) -> Iterable[tuple[str, str]]:
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            yield importer, imported


def layer_cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """A cycle between layers, as a list of `importer -> imported` examples, or None."""
    edges: dict[str, dict[str, str]] = {}
    for importer, imported in _imports(graph):
        a, b = layer_of(importer), layer_of(imported)
        if a != b:
            edges.setdefault(a, {}).setdefault(b, f"{importer} -> {imported}")
    state: dict[str, str] = {}

    def visit(layer: str, stack: list[tuple[str, str]]) -> list[str] | None:
        state[layer] = "open"
        for above, example in edges.get(layer, {}).items():
            step = [*stack, (layer, example)]
            if state.get(above) == "open":  # back to a layer on the current path: a cycle
                start = next(i for i, (on_path, _) in enumerate(step) if on_path == above)
                return [example for _, example in step[start:]]
            if above not in state:
                found = visit(above, step)
                if found:
                    return found
        state[layer] = "closed"
        return None

    for layer in LAYERS:
        if layer not in state:
            found = visit(layer, [])
            if found:
                return found
    return None


def sibling_cycles(graph: grimp.ImportGraph) -> dict[str, set[tuple[str, str]]]:
    """For each package whose children import each other in a cycle, the imports that would break it."""
    packages = sorted(m for m in graph.modules if graph.find_children(m))
    found = {p: graph.nominate_cycle_breakers(p) for p in packages}
    return {p: breakers for p, breakers in found.items() if breakers}


def test_lint_imports_keeps_every_contract():
    command = (
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"
    )
    result = subprocess.run(
        [sys.executable, "-c", command],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_no_cycle_between_layers(graph):
    assert layer_cycle(graph) is None


def test_no_cycle_between_the_children_of_any_package(graph):
    assert sibling_cycles(graph) == {}


def test_whole_packages_meet_only_through_the_pipelines(graph):
    """Between top-level packages the one two-way pair is trainer <-> evaluators, and every import from trainer
    into evaluators comes from trainer.pipelines."""
    crossings = {(a.split(".")[0], b.split(".")[0]): (a, b) for a, b in _imports(graph)}
    mutual = {tuple(sorted(pair)) for pair in crossings if pair[0] != pair[1] and pair[::-1] in crossings}
    assert mutual == {("evaluators", "trainer")}
    upward = {a for a, b in _imports(graph) if layer_of(a) == "trainer" and b.startswith("evaluators")}
    assert upward == set()


def test_the_checks_see_a_back_import(graph):
    """Each check fails when one import goes the wrong way."""
    graph = copy.deepcopy(graph)
    graph.add_import(
        importer="trainer.models", imported="evo.archive"
    )  # the trainer core reaching up into evo
    assert layer_cycle(graph) is not None
    graph.remove_import(importer="trainer.models", imported="evo.archive")
    graph.add_import(importer="evo.archive", imported="evo.loop")  # evo.loop already imports evo.archive
    assert ("evo.archive", "evo.loop") in sibling_cycles(graph).get("evo", set())
    graph.remove_import(importer="evo.archive", imported="evo.loop")
    assert layer_cycle(graph) is None and sibling_cycles(graph) == {}
