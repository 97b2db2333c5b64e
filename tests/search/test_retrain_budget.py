"""How many epochs the report's retrain fits in a time budget, from the search's measured pace."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import keras_tuner as kt
import pytest

from search.plan import MIN_FINAL_EPOCHS, Candidate, DefaultGuard, choose_final, final_epochs_that_fit
from search.retrain import (
    AFTER_TRAINING_SECONDS,
    EXPORT_CHECK_IMAGES,
    MAX_RETRAIN_EPOCHS,
    RETRAIN_BUDGET_MARGIN,
    RETRAIN_DEADLINE_SHARE,
    BestTrial,
    final_training_seconds,
    retrain_epochs,
    retrain_pace,
)

BEST = BestTrial("0003", 0.7, 0.7, epochs=3, hyperparameters=kt.HyperParameters())
# A 3-epoch trial on 1,000 images: 6 s of steady steps (2 ms an image), 4 s of build and tracing.
RECORD = {
    "seconds": 14.0,
    "epochs_trained": 3,
    "train_seconds": 6.0,
    "setup_seconds": 1.0,
    "trace_seconds": 3.0,
}

SIZES = {"images": 1200, "train_images": 1000, "test_images": 500}


def test_without_a_budget_the_best_epoch_count() -> None:
    assert retrain_epochs(BEST, RECORD, **SIZES, budget_s=None) == 3


def test_a_budget_is_filled_but_not_overrun_at_the_measured_pace() -> None:
    # At the record's pace (2 ms an image) an epoch of the 1,200 train+validation images takes
    # 2.4 s; building and tracing take 4 s, testing and exporting up to AFTER_TRAINING_SECONDS.
    epochs = retrain_epochs(BEST, RECORD, **SIZES, budget_s=300.0)
    assert epochs * 2.4 + 4.0 + AFTER_TRAINING_SECONDS <= 300.0  # the whole report fits
    assert epochs * 2.4 >= 0.7 * 300.0  # and training fills most of it
    # Half the budget, a little under half the epochs (the fixed costs stay); the cap holds for any budget.
    half = retrain_epochs(BEST, RECORD, **SIZES, budget_s=150.0)
    assert 2 * half <= epochs <= 2 * half + 25
    assert retrain_epochs(BEST, RECORD, **SIZES, budget_s=1e6) == MAX_RETRAIN_EPOCHS
    # From wall seconds alone (an older record) the pace is slower, so fewer epochs fit.
    old = {"seconds": 14.0, "epochs_trained": 3}
    assert retrain_epochs(BEST, old, **SIZES, budget_s=300.0) < epochs


def test_the_reserve_after_training_counts_the_export_checks_on_a_thousand_images_only() -> None:
    # The bench's 10,000 test images: the evaluation passes over all of them, the five export checks
    # over EXPORT_CHECK_IMAGES (checking all of them took a quarter of a 5-minute job).
    pace, after = retrain_pace(RECORD, train_images=1000, test_images=10_000)
    _, after_small = retrain_pace(RECORD, train_images=1000, test_images=EXPORT_CHECK_IMAGES)
    per_pass_image = pace / 3
    assert after - after_small == pytest.approx(2 * (10_000 - EXPORT_CHECK_IMAGES) * per_pass_image)


def test_a_tiny_budget_still_trains_one_epoch() -> None:
    assert retrain_epochs(BEST, RECORD, **SIZES, budget_s=5.0) == 1


def test_what_each_epoch_costs_besides_its_steps_counts_too() -> None:
    # On tiny data most of an epoch is its fixed cost (callbacks, the pipeline's epoch start): a
    # plan from the steps alone overran a 75 s job by 40 %.
    with_overhead = {**RECORD, "overhead_seconds": 4.0 + 3 * 2.4}  # 2.4 s per epoch besides steps
    fewer = retrain_epochs(BEST, with_overhead, **SIZES, budget_s=300.0)
    assert fewer * 4.8 + 4.0 + AFTER_TRAINING_SECONDS <= 300.0
    assert fewer < retrain_epochs(BEST, RECORD, **SIZES, budget_s=300.0)


# The 900 s bench's model sampler, seed 0 (7eaf4e6, 2 AVX512-BF16 cores, 2,000 validation images,
# 12,000 final images): the default's epoch, a width-24 GELU entry at 1 and 3 epochs, and a width-48
# entry at 1, 3 and 9 epochs, with their measured seconds per image; 532 s were left at the choice.
SEED0_LEFT_S = 532.0
SEED0_W24_3 = Candidate("0010", 0.5875, 3, 0.001090, "0002", accuracy=0.5875)
SEED0_W48_9 = Candidate("0012", 0.7475, 9, 0.001247, "0009", accuracy=0.7475)
SEED0 = [
    Candidate("0000", 0.4085, 1, 0.000610, default=True, accuracy=0.4085),
    Candidate("0002", 0.463, 1, 0.001371, accuracy=0.463),
    SEED0_W24_3,
    Candidate("0003", 0.4765, 1, 0.001331, accuracy=0.4765),
    Candidate("0009", 0.6215, 3, 0.001250, "0003", accuracy=0.6215),
    SEED0_W48_9,
]


def test_the_trial_choice_weighs_the_seconds_the_final_training_trains_for() -> None:
    """The final training ends its schedule at RETRAIN_DEADLINE_SHARE of the time left, not at the
    margin its first plan keeps: weighed with the margin, the width-48 trial (74.8 % at 9 epochs)
    fitted 29.7 of the 30 epochs the choice demands, and the width-24 one (58.8 % at 3) was trained
    and ended 1.6 points below the default trained alone."""
    with_margin = RETRAIN_BUDGET_MARGIN * SEED0_LEFT_S - AFTER_TRAINING_SECONDS
    assert final_epochs_that_fit(SEED0_W48_9, with_margin, 12_000) < MIN_FINAL_EPOCHS
    assert choose_final(SEED0, with_margin, 12_000, DefaultGuard(2000)) is SEED0_W24_3
    final_s = final_training_seconds(SEED0_LEFT_S)
    assert final_s == pytest.approx(RETRAIN_DEADLINE_SHARE * SEED0_LEFT_S - AFTER_TRAINING_SECONDS)
    assert choose_final(SEED0, final_s, 12_000, DefaultGuard(2000)) is SEED0_W48_9
    # What follows the training is kept out of it, and a budget already spent still trains a little.
    assert final_training_seconds(SEED0_LEFT_S, after_s=100.0) == pytest.approx(
        final_s + AFTER_TRAINING_SECONDS - 100.0
    )
    assert final_training_seconds(10.0) == 1.0


@pytest.mark.slow
# Alone: its final training measures its own pace against the records' (a loaded machine's slower
# epochs made it plan fewer epochs, not more).
@pytest.mark.serial
def test_the_final_training_measures_its_epochs_and_fills_the_budget(
    finished_run: Path, tmp_path: Path, capsys
) -> None:
    """Trial records that claim a 4x slower pace plan too few epochs; the final training measures its
    own epochs, trains more, stretches its schedule to end with them, and still ends in the budget."""
    from search import make_report
    from tests.cli import copy_run, report_budget

    run = copy_run(finished_run, tmp_path / "slow-records")
    # About 8 epochs of the chosen trial at its true pace (its cost differs 10x between runs).
    budget = report_budget(run, epochs=8)
    for record_file in (run / "tuner").glob("trial_*/hypercnn.json"):
        record = json.loads(record_file.read_text())
        for key in ("train_seconds", "seconds"):
            record[key] = 4 * record[key]
        record_file.write_text(json.dumps(record))
    started = time.time()
    make_report(run, retrain=True, time_budget_s=budget)
    elapsed = time.time() - started
    out = capsys.readouterr().out
    planned = int(re.search(r"for (\d+) epoch\(s\)", out).group(1))
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert "ms per step: its schedule ended at step" in out and metrics["retrain_epochs_run"] > planned, out
    assert elapsed <= budget, f"{elapsed:.1f} s of a {budget:.0f} s budget"


@pytest.mark.parametrize("planned_epochs", [2, 60])
def test_the_final_trainings_schedule_ends_at_its_deadline(planned_epochs: int) -> None:
    """Planned far too short or far too long, the final training re-measures its pace as it goes:
    it trains until about the deadline and no later, and its learning rate has reached zero there (a
    cosine cut off by the deadline leaves the model unannealed)."""
    import keras

    from search.compat import learning_rate_schedule
    from search.pipeline import make_dataset
    from search.retrain import ScheduleToDeadline
    from search.tuner import StopAtDeadline
    from spaces import get_space
    from spaces.base import DataSpec
    from tests.spaces.colours import overlapping_colours

    images, labels = overlapping_colours(512, seed=0)
    spec = DataSpec(num_classes=4, train_size=len(labels), batch_size=32)
    hypermodel = get_space("fast")(spec)
    hp = kt.HyperParameters()
    hp.Fixed("width", 16)
    hp.values["tuner/epochs"] = planned_epochs
    model = hypermodel.build(hp)
    train = make_dataset(images, labels, 4, spec.batch_size, True, 0)
    upper = 200
    deadline = time.time() + 8.0
    clock = ScheduleToDeadline(deadline, planned_epochs, upper, spec.steps_per_epoch)
    hypermodel.fit(hp, model, train, epochs=upper, callbacks=[clock, StopAtDeadline(deadline)], verbose=0)
    ended = time.time()
    schedule = learning_rate_schedule(model.optimizer)
    final_rate = float(schedule(model.optimizer.iterations))
    assert clock.annealed and final_rate <= 0.01 * schedule.peak, (final_rate, clock.describe())
    assert deadline - 1.0 <= ended <= deadline + 0.5, (ended - deadline, clock.describe())
    keras.backend.clear_session()


def test_a_final_training_that_reaches_its_epoch_limit_before_the_deadline_says_so() -> None:
    """The 200-epoch cap, not the clock, ended default_only's 900 s training: the line names the cap."""
    import keras

    from search.pipeline import make_dataset
    from search.retrain import ScheduleToDeadline
    from spaces import get_space
    from spaces.base import DataSpec
    from tests.spaces.colours import overlapping_colours

    images, labels = overlapping_colours(256, seed=0)
    spec = DataSpec(num_classes=4, train_size=len(labels), batch_size=32)
    hypermodel = get_space("fast")(spec)
    hp = kt.HyperParameters()
    hp.Fixed("width", 16)
    hp.values["tuner/epochs"] = 2
    model = hypermodel.build(hp)
    train = make_dataset(images, labels, 4, spec.batch_size, True, 0)
    clock = ScheduleToDeadline(time.time() + 600.0, 2, 3, spec.steps_per_epoch)
    history = hypermodel.fit(hp, model, train, epochs=3, callbacks=[clock], verbose=0)
    assert len(history.epoch) == 3 and clock.annealed
    assert "at its upper limit of 3 epochs" in clock.describe()
    keras.backend.clear_session()
