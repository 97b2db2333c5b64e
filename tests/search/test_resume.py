"""A killed, budget-stopped or failing search loses nothing it already finished."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from search import compat, run_search
from search.errors import HyperCNNError
from search.tuner import HyperCNNTuner
from spaces import register_space
from spaces.cnn import ClassicCNN
from tests.conftest import quick_search_config
from tests.search.failing_space import space_failing_at_fit

pytestmark = pytest.mark.slow


def completed_rows(run: Path) -> pd.DataFrame:
    path = run / "trials.csv"
    if not path.is_file():
        return pd.DataFrame()
    try:
        table = pd.read_csv(path, dtype={"trial_id": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        return pd.DataFrame()
    return table[table["status"] == "COMPLETED"]


# A search killed mid-trial keeps its finished trials and continues the interrupted one at its next
# epoch: tests/search/test_distributed.py.


@pytest.mark.serial  # asserts the search ends within 3 s of its budget
def test_time_budget_cuts_the_running_trial_and_resume_keeps_it(tmp_path: Path, tiny_npz: Path) -> None:
    from tests.search.slow_space import SlowSpace  # registers it: imported here, not at collection

    # 160 training images, batch 8: 20 steps per epoch, 10 s per epoch at 0.5 s a step. The first
    # trial (1 epoch) starts after a few seconds of set-up and cannot end before the 8 s deadline.
    SlowSpace.seconds_per_step = 0.5
    budget = 8.0
    slow = dict(space="slow-test-space", batch_size=8, max_epochs=3, factor=3)
    started = time.time()
    result = run_search(quick_search_config(tmp_path, tiny_npz, time_budget_s=budget, **slow))
    elapsed = time.time() - started
    # The trial stops after the step that crosses the deadline, then validates once.
    assert elapsed < budget + 3.0, elapsed
    trials = pd.read_csv(tmp_path / "run" / "trials.csv", dtype={"trial_id": str})
    assert result.trials == len(trials) == 1 and trials.loc[0, "status"] == "CUT_BY_BUDGET"
    cut = trials.iloc[0]
    record = json.loads((tmp_path / "run" / "tuner" / f"trial_{cut.trial_id}" / "hypercnn.json").read_text())
    assert record["status_note"] == "CUT_BY_BUDGET" and 1 <= record["train_steps"] < 20 * cut["epochs"]
    # Validated and kept: the partial epoch has a validation score (any value, a few steps in).
    assert cut["epochs_trained"] >= 1 and pd.notna(cut["val_accuracy"]) and 0.0 <= cut["val_accuracy"] <= 1.0

    # Resumed at full speed with no budget: the search finishes and the cut trial is not trained again.
    SlowSpace.seconds_per_step = 0.0
    resumed = run_search(quick_search_config(tmp_path, tiny_npz, **slow))
    after = pd.read_csv(tmp_path / "run" / "trials.csv", dtype={"trial_id": str}).set_index("trial_id")
    assert resumed.trials > result.trials
    assert after.loc[cut.trial_id, "val_accuracy"] == cut["val_accuracy"]
    again = json.loads((tmp_path / "run" / "tuner" / f"trial_{cut.trial_id}" / "hypercnn.json").read_text())
    assert again["seconds"] == record["seconds"], "the cut trial ran again"


def test_deadline_ends_training_after_the_current_batch_and_still_validates() -> None:
    from search.pipeline import make_dataset
    from search.tuner import StopAtDeadline
    from spaces import get_space
    from spaces.base import DataSpec
    from tests.conftest import make_images

    x, y = make_images(16, num_classes=2)
    hypermodel = get_space("cnn")(DataSpec(num_classes=2, train_size=len(y), batch_size=8), fit_verbose=0)
    import keras_tuner as kt

    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    stop = StopAtDeadline(deadline=time.time() - 1)  # already past
    data = make_dataset(x, y, 2, batch_size=8)
    history = hypermodel.fit(hp, model, data, validation_data=data, epochs=5, callbacks=[stop])
    assert stop.stopped
    assert history.epoch == [0]  # one epoch of one batch, not five
    assert "val_accuracy" in history.history  # the partial epoch was still validated
    assert int(model.optimizer.iterations) == 1


def test_resume_with_different_search_flags_is_refused(tmp_path: Path, tiny_npz: Path) -> None:
    quick_search_config(tmp_path, tiny_npz).save()
    with pytest.raises(HyperCNNError, match="different max_epochs.*--overwrite"):
        run_search(quick_search_config(tmp_path, tiny_npz, max_epochs=5, time_budget_s=1))


class DivergingSpace(ClassicCNN):
    """The classic CNN with activations scaled past float32's range: the loss is NaN at once."""

    description = "test only: diverges"

    def build_features(self, hp, x):
        from keras import layers

        return layers.Rescaling(1e38, name="overflow")(super().build_features(hp, x))


def test_diverging_trials_are_recorded_and_stop_the_search_with_one_line(
    tmp_path: Path, tiny_npz: Path
) -> None:
    # Registered here, not at import, so the registry-wide space tests never see it.
    register_space("diverging-test-space")(DivergingSpace)
    cfg = quick_search_config(
        tmp_path, tiny_npz, space="diverging-test-space", max_consecutive_failed_trials=2
    )
    with pytest.raises(HyperCNNError, match="search stopped: number of consecutive failures") as error:
        run_search(cfg)
    assert "\n" not in str(error.value)
    trials = pd.read_csv(tmp_path / "run" / "trials.csv", dtype={"trial_id": str})
    diverged = trials[trials["status"] == "DIVERGED"]
    assert len(diverged) >= 2
    assert diverged["error"].str.startswith("diverged: loss became NaN/inf").all()


def out_of_memory() -> BaseException:
    import tensorflow as tf

    return tf.errors.ResourceExhaustedError(
        None, None, "OOM when allocating tensor with shape[128,512,32,32] and type float on GPU:0"
    )


OutOfMemorySpace = space_failing_at_fit(1, out_of_memory, "test only: the first trial runs out of memory")


def test_a_trial_out_of_device_memory_fails_with_one_line_and_the_search_goes_on(
    tmp_path: Path, tiny_npz: Path
) -> None:
    register_space("oom-test-space")(OutOfMemorySpace)
    # One-epoch trials, three of them (max_epochs 1: a bracket of one trial per Hyperband iteration).
    config = quick_search_config(
        tmp_path, tiny_npz, space="oom-test-space", max_epochs=1, hyperband_iterations=3
    )
    result = run_search(config)
    trials = pd.read_csv(tmp_path / "run" / "trials.csv", dtype={"trial_id": str})
    failed = trials[trials["status"] == "FAILED"]
    assert len(failed) == 1 and failed["error"].iloc[0].startswith("out of memory: OOM when allocating")
    assert "a lower --batch-size fits" in failed["error"].iloc[0] and "\n" not in failed["error"].iloc[0]
    assert result.completed == len(trials) - 1 >= 2, trials[["trial_id", "status"]]


@pytest.mark.parametrize("continued_from", ["memory", "checkpoint"])
def test_a_promoted_trial_continues_its_parents_optimizer_steps(
    tmp_path: Path, tiny_npz: Path, monkeypatch, continued_from: str
) -> None:
    if continued_from == "checkpoint":  # as after a resume: no parent model left in memory
        monkeypatch.setattr(HyperCNNTuner, "max_live_models", 0)
    run_search(quick_search_config(tmp_path, tiny_npz, space="fast", max_epochs=2, factor=2))
    # Each trial's end dropped the gradient functions that pin its traced steps (search.compat).
    assert compat.forget_custom_gradients() == 0
    trials = pd.read_csv(tmp_path / "run" / "trials.csv", dtype={"trial_id": str, "parent_trial": str})
    promoted = trials[trials["parent_trial"].notna()]
    assert len(promoted) >= 1
    for row in promoted.itertuples():
        child = json.loads(
            (tmp_path / "run" / "tuner" / f"trial_{row.trial_id}" / "hypercnn.json").read_text()
        )
        parent_id = str(row.parent_trial).zfill(len(row.trial_id))
        parent = json.loads((tmp_path / "run" / "tuner" / f"trial_{parent_id}" / "hypercnn.json").read_text())
        assert child["continued_from"] == continued_from and parent["continued_from"] is None
        # 160 training images in batches of 128: 2 steps per epoch.
        assert parent["optimizer_steps"] == [0, 2]
        assert child["optimizer_steps"] == [2, 4]  # picked up at step 2, not from zero
