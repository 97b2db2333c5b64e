"""The fused optimizers update exactly as Keras's own SGD and AdamW do."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from spaces import recipe
from spaces.optimizers import FusedAdamW, FusedSGD
from tests.conftest import traced_train_step

CASES = [
    (keras.optimizers.SGD, FusedSGD, {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}),
    (keras.optimizers.SGD, FusedSGD, {"momentum": 0.9, "nesterov": False}),
    (keras.optimizers.AdamW, FusedAdamW, {"weight_decay": 5e-3}),
]


def train(optimizer_class, options: dict) -> list[np.ndarray]:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(3)]
    )
    schedule = recipe.learning_rate_schedule(0.05, 0.2, epochs=1, steps_per_epoch=5)
    model.compile(optimizer=optimizer_class(schedule, **options), loss="mse")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 6)).astype("float32"), rng.normal(size=(40, 3)).astype("float32")
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return model.get_weights() + [v.numpy() for v in model.optimizer.variables]


@pytest.mark.parametrize(("stock", "fused", "options"), CASES)
def test_fused_updates_equal_keras_updates(stock, fused, options: dict) -> None:
    expected, got = train(stock, options), train(fused, options)
    assert len(expected) == len(got)  # the same variables: checkpoints are interchangeable
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6)


def test_the_training_step_runs_one_kernel_per_variable() -> None:
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), keras.layers.Dense(3)])
    model.compile(optimizer=FusedSGD(0.1, momentum=0.9, nesterov=True), loss="mse")
    model.optimizer.build(model.trainable_variables)
    _, op_types = traced_train_step(model, tf.TensorSpec([8, 6]), tf.TensorSpec([8, 3]))
    assert op_types.count("ResourceApplyKerasMomentum") == len(model.trainable_variables)
