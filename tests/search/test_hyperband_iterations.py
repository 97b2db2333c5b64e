"""A budgeted search goes on with new Hyperband iterations until its time is spent; an unbudgeted one, or
one given --hyperband-iterations, runs the iterations it is given."""

from __future__ import annotations

import json
import time
from pathlib import Path

from search import run_search
from search.data import load_data
from search.run import build_tuner
from tests.conftest import quick_search_config

# max_epochs 1: one bracket of a single 1-epoch trial per Hyperband iteration.
ONE_TRIAL_PER_ITERATION = dict(max_epochs=1, factor=2)


def oracle_state(run: Path) -> dict:
    return json.loads(next(run.rglob("oracle.json")).read_text())


def test_a_budgeted_search_runs_new_iterations_until_its_deadline(tmp_path: Path, tiny_npz: Path) -> None:
    budget = 25.0
    started = time.time()
    result = run_search(
        quick_search_config(tmp_path, tiny_npz, time_budget_s=budget, **ONE_TRIAL_PER_ITERATION)
    )
    elapsed = time.time() - started
    # One iteration is one trial here: more trials are more iterations, and the deadline ended them.
    assert result.trials >= 3, result
    assert oracle_state(tmp_path / "run")["current_iteration"] >= 2
    assert elapsed >= budget - 5, elapsed

    # Resumed without a budget, it finishes the iteration in progress and stops: the oracle comes back
    # with the saved count of 10,000, and KerasTuner would never stop below the current iteration.
    unbudgeted = quick_search_config(tmp_path, tiny_npz, **ONE_TRIAL_PER_ITERATION)
    current = oracle_state(tmp_path / "run")["current_iteration"]
    tuner = build_tuner(unbudgeted, load_data(unbudgeted), overwrite=False)
    assert tuner.oracle.hyperband_iterations == current + 1
    resumed = run_search(unbudgeted)
    assert result.trials <= resumed.trials <= result.trials + 1


def test_iterations_given_or_no_budget_run_exactly_that_many(tmp_path: Path, tiny_npz: Path) -> None:
    given = run_search(
        quick_search_config(
            tmp_path / "given", tiny_npz, time_budget_s=600, hyperband_iterations=2, **ONE_TRIAL_PER_ITERATION
        )
    )
    assert given.trials == 2 and given.seconds < 600
    unbudgeted = run_search(quick_search_config(tmp_path / "none", tiny_npz, **ONE_TRIAL_PER_ITERATION))
    assert unbudgeted.trials == 1
