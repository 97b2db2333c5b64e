"""A final training that diverges never ships: the next candidate is trained instead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search.errors import HyperCNNError
from search.finalize import finalize_run
from spaces import register_space
from spaces.cnn import ClassicCNN
from tests.cli import copy_run

pytestmark = pytest.mark.slow


class PoisonedSpace(ClassicCNN):
    """The classic CNN, whose chosen configurations overflow float32 in training (loss NaN at once):
    a final training that diverges where the search's short trials did not."""

    description = "test only: chosen configurations diverge"
    poisoned: list[dict] = []
    poison_all = False

    def build_features(self, hp, x):
        from keras import layers

        features = super().build_features(hp, x)
        values = {k: v for k, v in hp.values.items() if not k.startswith("tuner/")}
        if PoisonedSpace.poison_all or values in PoisonedSpace.poisoned:
            features = layers.Rescaling(1e38, name="overflow")(features)
        return features


@pytest.fixture
def poisoned_run(finished_run: Path, tmp_path: Path):
    """A copy of the end-to-end run, finalized again with the poisoned twin of its `cnn` space."""
    register_space("poisoned-test-space")(PoisonedSpace)
    run = copy_run(finished_run, tmp_path / "copy")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "space": "poisoned-test-space"}))
    yield run
    PoisonedSpace.poisoned, PoisonedSpace.poison_all = [], False


def values_of(run: Path, trial_id: str) -> dict:
    trial = json.loads((run / "tuner" / f"trial_{trial_id}" / "trial.json").read_text())
    return {k: v for k, v in trial["hyperparameters"]["values"].items() if not k.startswith("tuner/")}


def test_a_diverged_final_training_falls_back_to_the_next_candidate(poisoned_run: Path, capsys) -> None:
    top = json.loads((poisoned_run / "report" / "metrics.json").read_text())["best_trial"]
    PoisonedSpace.poisoned = [values_of(poisoned_run, top)]
    finalized = finalize_run(poisoned_run, retrain=True)
    out = capsys.readouterr().out
    assert f"the final training of trial {top} diverged" in out
    metrics = json.loads((poisoned_run / "report" / "metrics.json").read_text())
    # A promotion shares its parent's configuration: both are poisoned and skipped.
    assert top in metrics["diverged_final_trainings"]
    assert values_of(poisoned_run, metrics["best_trial"]) not in PoisonedSpace.poisoned
    assert finalized.trial_id == metrics["best_trial"] and np.isfinite(metrics["test_loss"])
    history = json.loads((poisoned_run / "model" / "history.json").read_text())
    assert np.all(np.isfinite(history["loss"]))
    trials = pd.read_csv(poisoned_run / "trials.csv", dtype={"trial_id": str})
    assert metrics["best_trial"] in set(trials["trial_id"])


def test_when_every_final_training_diverges_it_says_so_in_one_line(poisoned_run: Path) -> None:
    PoisonedSpace.poison_all = True
    with pytest.raises(HyperCNNError, match="diverged for every finished trial") as error:
        finalize_run(poisoned_run, retrain=True)
    assert "\n" not in str(error.value)


def test_a_search_of_one_trial_ships_it_as_the_only_trial_with_the_plans_reason(
    tmp_path: Path, tiny_npz: Path
) -> None:
    """Where the budget plan searched nothing (a slow machine's `make run`), the report must not call the
    default 'the best score of the search': it says it was the only trial, and the plan's reason."""
    from search import run_search
    from tests.conftest import quick_search_config

    # max_epochs 1, one Hyperband iteration: exactly one trial, the space's default.
    one_trial = quick_search_config(tmp_path, tiny_npz, max_epochs=1, hyperband_iterations=1)
    assert run_search(one_trial).trials == 1
    reason = "the whole budget fits about 3 epochs of the default, so no search beyond its first trial"
    (tmp_path / "run" / "job.json").write_text(json.dumps({"time_budget_s": 60, "plan": {"reason": reason}}))
    finalize_run(tmp_path / "run")
    chosen_because = json.loads((tmp_path / "run" / "report" / "metrics.json").read_text())["chosen_because"]
    assert chosen_because == f"the only finished trial: {reason}"


def test_a_top_trial_within_the_noise_of_the_default_loses_the_final_training_to_it(
    finished_run: Path, tmp_path: Path, capsys
) -> None:
    """The default's trials are rewritten to score just below the best other trial: that trial tops
    the ranking, but a 1-point lead on 40 validation images is noise, so the default is trained."""
    from search.config import SearchConfig
    from search.data import load_data
    from search.plan import DefaultGuard, not_beating_default
    from search.retrain import final_candidates
    from search.run import build_tuner

    run = copy_run(finished_run, tmp_path / "copy")
    config = SearchConfig.load(run)
    candidates = final_candidates(build_tuner(config, load_data(config), overwrite=False))
    defaults = {c.trial_id for c in candidates if c.default}
    # The default is the warm start's first trial; its promotions share its configuration.
    assert "0000" in defaults and all(
        c.default == (c.parent in defaults or c.trial_id == "0000") for c in candidates
    )
    assert all(c.accuracy is not None for c in candidates)
    rival = max((c for c in candidates if not c.default), key=lambda c: (c.score, c.trial_id))
    for trial_id in defaults:
        folder = run / "tuner" / f"trial_{trial_id}"
        trial = json.loads((folder / "trial.json").read_text())
        record = json.loads((folder / "hypercnn.json").read_text())
        trial["score"] = rival.score - 0.01
        record["history"]["val_accuracy"] = [rival.accuracy - 0.01] * len(record["history"]["epoch"])
        (folder / "trial.json").write_text(json.dumps(trial))
        (folder / "hypercnn.json").write_text(json.dumps(record))
    tuner = build_tuner(config, load_data(config), overwrite=False)
    top = tuner.best_trial().trial_id  # among trials tied with the rival, KerasTuner's own order decides
    candidates = final_candidates(tuner)
    assert top not in defaults and tuner.oracle.get_trial(top).score == rival.score
    assert top in not_beating_default(candidates, DefaultGuard(config.val_size))

    finalize_run(run, retrain=True)
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["best_trial"] in defaults
    assert f"the top-ranked {top} did not beat the default configuration" in metrics["chosen_because"]
    assert f"not the top-ranked {top}" in capsys.readouterr().out


def test_a_trial_scored_after_its_first_epoch_only_does_not_leave_the_default(
    finished_run: Path, tmp_path: Path
) -> None:
    """A trial that ran only the first rung (1 epoch) is rewritten to lead the default's every rung far
    beyond the noise, and the rest to trail it: it tops the ranking, yet the search's trials reach
    2 epochs (max_epochs 2), and a lead after one epoch alone does not leave the default."""
    from search.config import SearchConfig
    from search.data import load_data
    from search.plan import guard_epochs
    from search.retrain import final_candidates
    from search.run import build_tuner

    run = copy_run(finished_run, tmp_path / "copy")
    config = SearchConfig.load(run)
    assert guard_epochs(config.max_epochs) == 2
    candidates = final_candidates(build_tuner(config, load_data(config), overwrite=False))
    defaults = {c.trial_id for c in candidates if c.default}
    parents = {c.parent for c in candidates}
    rival = next(c for c in candidates if not c.default and c.epochs == 1 and c.trial_id not in parents)
    for c in candidates:
        accuracy = 0.95 if c.trial_id == rival.trial_id else 0.5 if c.default else 0.1
        folder = run / "tuner" / f"trial_{c.trial_id}"
        trial = json.loads((folder / "trial.json").read_text())
        record = json.loads((folder / "hypercnn.json").read_text())
        trial["score"] = accuracy
        record["history"]["val_accuracy"] = [accuracy] * len(record["history"]["epoch"])
        (folder / "trial.json").write_text(json.dumps(trial))
        (folder / "hypercnn.json").write_text(json.dumps(record))
    assert build_tuner(config, load_data(config), overwrite=False).best_trial().trial_id == rival.trial_id

    finalize_run(run, retrain=True)
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["best_trial"] in defaults
    assert "or was not trained 2 epochs or more in the search" in metrics["chosen_because"]
