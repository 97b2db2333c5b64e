"""The shared recipe: the learning-rate schedule follows the epochs each trial trains."""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from spaces import recipe
from tests.conftest import traced_train_step

# A batch of 32 CIFAR-sized uint8 images and one-hot labels, for tracing a space's training step.
BATCH_SPECS = (tf.TensorSpec([32, 32, 32, 3], tf.uint8), tf.TensorSpec([32, 10], tf.float32))


def fast_model(hp: kt.HyperParameters) -> keras.Model:
    from spaces import get_space
    from spaces.base import DataSpec

    return get_space("fast")(DataSpec(num_classes=10, train_size=256, batch_size=32)).build(hp)


@pytest.mark.parametrize("epochs", [1, 3, 9])
def test_schedule_warms_up_then_decays_to_zero_over_the_trials_epochs(epochs: int) -> None:
    steps_per_epoch = 40
    total = epochs * steps_per_epoch
    schedule = recipe.learning_rate_schedule(0.2, 0.25, epochs, steps_per_epoch)
    warmup = round(0.25 * total)
    lr = lambda step: float(schedule(step))  # noqa: E731
    assert lr(0) == pytest.approx(0.0, abs=1e-7)
    assert lr(warmup // 2) == pytest.approx(0.2 * (warmup // 2) / warmup, rel=1e-4)  # linear warm-up
    assert lr(warmup) == pytest.approx(0.2, rel=1e-5)  # the peak
    halfway = warmup + (total - warmup) // 2
    assert lr(halfway) == pytest.approx(0.1, rel=0.05)  # cosine: half the peak halfway through decay
    assert lr(total) == pytest.approx(0.0, abs=1e-6)  # annealed to zero exactly at the trial's end


def test_longer_budgets_stretch_the_schedule() -> None:
    short = recipe.learning_rate_schedule(0.1, 0.1, 3, 50)
    long = recipe.learning_rate_schedule(0.1, 0.1, 9, 50)
    step = 150  # the end of the 3-epoch trial
    assert float(short(step)) == pytest.approx(0.0, abs=1e-6)
    assert float(long(step)) > 0.07  # a 9-epoch trial is still near its peak there


def test_no_warmup_starts_at_the_peak() -> None:
    schedule = recipe.learning_rate_schedule(0.05, 0.0, 2, 10)
    assert float(schedule(0)) == pytest.approx(0.05)
    assert np.isfinite(float(schedule(20)))


def test_each_optimizer_has_its_own_learning_rate_range() -> None:
    hp = kt.HyperParameters()
    hp.Fixed("optimizer", "adamw")
    optimizer = recipe.make_optimizer(hp, epochs=2, steps_per_epoch=10)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert "adamw_learning_rate" in hp.values and "sgd_nesterov_learning_rate" not in hp.values


@pytest.mark.parametrize(("optimizer", "scale"), [("sgd_nesterov", 1 / 16), ("adamw", 1 / 4)])
def test_the_learning_rate_follows_the_batch_size(optimizer: str, scale: float) -> None:
    """Rates are chosen for batch 128: batch 8 trains SGD at 1/16 of it, AdamW at 1/4 (the cnn
    default's SGD rate 0.1 diverged at batch 8)."""
    from spaces import get_space
    from spaces.base import DataSpec

    peaks = {}
    for batch_size in (128, 8):
        hp = kt.HyperParameters()
        hp.Fixed("optimizer", optimizer)
        spec = DataSpec(num_classes=10, train_size=256, batch_size=batch_size)
        model = get_space("cnn")(spec).build(hp)
        peaks[batch_size] = recipe.compat.learning_rate_schedule(model.optimizer).peak
        assert peaks[128] == hp.values[f"{optimizer}_learning_rate"]
    assert peaks[8] == pytest.approx(scale * peaks[128])


def test_stretching_the_schedule_changes_the_rate_without_retracing() -> None:
    schedule = recipe.learning_rate_schedule(0.1, 0.1, 3, 50)  # 150 steps
    rate_at = tf.function(lambda step: schedule(step))
    assert float(rate_at(tf.constant(150))) == pytest.approx(0.0, abs=1e-6)
    schedule.set_total_steps(9 * 50)  # promoted to a 9-epoch trial
    stretched = recipe.learning_rate_schedule(0.1, 0.1, 9, 50)
    assert float(rate_at(tf.constant(150))) == pytest.approx(float(stretched(150)), rel=1e-5)
    assert float(rate_at(tf.constant(150))) > 0.07
    assert rate_at.experimental_get_tracing_count() == 1


def test_the_search_cannot_switch_flip_and_crop_off() -> None:
    # Hyperband's 1-epoch trials favour no augmentation; the long retrain then overfits.
    hp = kt.HyperParameters()
    augmentation = recipe.augmentation(hp, mean=(125.0, 123.0, 114.0))
    assert augmentation.flip and augmentation.crop == 4
    space = {param.name: param for param in hp.space}
    assert isinstance(space["augment_flip"], kt.engine.hyperparameters.Fixed)
    assert 0 not in space["augment_crop"].values


@pytest.mark.parametrize("optimizer", ["sgd_nesterov", "adamw"])
def test_the_training_step_computes_the_schedule_once(optimizer: str) -> None:
    """Keras's weight decay asks for the learning rate once per variable: one schedule in the graph."""
    hp = kt.HyperParameters()
    hp.Fixed("optimizer", optimizer)
    model = fast_model(hp)
    assert len(model.trainable_variables) > 20  # decay touches every kernel: many chances to repeat
    _, op_types = traced_train_step(model, *BATCH_SPECS)
    assert op_types.count("Cos") == 1


def test_the_training_step_is_traced_once_and_creates_no_variables() -> None:
    """A step whose first trace makes variables (Keras's metric totals) is traced a second time."""
    model = fast_model(kt.HyperParameters())
    created = []

    def record(next_creator, **kwargs):
        created.append(kwargs.get("name"))
        return next_creator(**kwargs)

    with tf.variable_creator_scope(record):
        step, _ = traced_train_step(model, *BATCH_SPECS)
    assert created == []
    assert step.experimental_get_tracing_count() == 1
