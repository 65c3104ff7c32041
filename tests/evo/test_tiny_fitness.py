"""The tiny preset's fitness separates losses: DPO and a different loss, trained as the tiny search trains them,
get different scores with nonzero standard errors (with plain preference accuracy both score 1.0000 +- 0)."""

import pytest

from evaluators.fitness import Fitness, paired_delta
from evo.config import load_config
from evo.job import CandidateJob, run_job
from evo.synthetic import write_synthetic_pairs


@pytest.mark.slow
def test_tiny_dpo_and_hinge_get_different_fitness_with_nonzero_stderr(tmp_path):
    config = load_config(preset="tiny")
    train, heldout = write_synthetic_pairs(tmp_path / "data", config.data.synthetic_pairs)
    results = {}
    for loss in ("sigmoid", "hinge"):
        job = CandidateJob(
            candidate_id=1,
            name=loss,
            work_dir=str(tmp_path / loss),
            train_path=str(train),
            heldout_path=str(heldout),
            training=config.training,
            fitness=config.fitness,
            loss=loss,
        )
        results[loss] = run_job(job)
        assert results[loss].status == "done", results[loss].reason
    dpo, hinge = results["sigmoid"], results["hinge"]
    assert dpo.stderr > 0 and hinge.stderr > 0
    assert abs(dpo.fitness - hinge.fitness) > 3 * max(dpo.stderr, hinge.stderr)
    scored = [Fitness(r.fitness, r.stderr, r.n, r.metrics["fitness_details"]) for r in (hinge, dpo)]
    delta = paired_delta(*scored)
    assert delta.n == 6 and delta.stderr > 0 and delta.delta != 0
