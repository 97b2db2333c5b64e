"""Every registered space builds a uint8-in model and trains one epoch on tiny data, on every backend."""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
import pytest

from spaces import get_space, list_spaces, register_space
from spaces.base import DataSpec, SpaceHyperModel, describe_space
from tests.conftest import make_images


# On JAX the cnn space's first training step takes ~40 s to compile on 2 CPU cores: TensorFlow only.
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=() if name == "cnn" else pytest.mark.backend_neutral)
        for name in list_spaces()
    ],
)
def test_space_builds_and_trains_one_epoch_with_its_defaults(name: str) -> None:
    x, y = make_images(12, num_classes=3)
    space = get_space(name)(DataSpec(num_classes=3), fit_verbose=0)
    hp = kt.HyperParameters()
    model = space.build(hp)
    assert model.input.dtype == "uint8"
    if keras.backend.backend() == "tensorflow":
        from search.pipeline import make_dataset  # tf.data: augments in the pipeline

        history = space.fit(hp, model, make_dataset(x, y, 3, batch_size=16, shuffle=True), epochs=1)
    else:  # arrays: the model's first layer augments inside the training step
        assert model.get_layer("augment")
        history = space.fit(hp, model, x, keras.utils.to_categorical(y, 3), batch_size=16, epochs=1)
    assert np.isfinite(history.history["loss"][0])
    probabilities = model.predict(x[:5], verbose=0)
    assert probabilities.shape == (5, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.backend_neutral
@pytest.mark.parametrize("name", list_spaces())
def test_space_describes_ranges_and_defaults(name: str) -> None:
    rows = describe_space(get_space(name))
    assert rows
    assert all({"name", "kind", "allowed", "default"} <= set(row) for row in rows)


def test_a_user_space_registers_by_name() -> None:
    from keras import layers

    @register_space("tiny-test-space")
    class TinySpace(SpaceHyperModel):
        description = "one conv layer"

        def build_features(self, hp, x):
            x = layers.Conv2D(hp.Choice("width", [4, 8], default=4), 3)(x)
            return layers.GlobalAveragePooling2D()(x)

    assert "tiny-test-space" in list_spaces()
    assert get_space("tiny-test-space") is TinySpace
    assert "width" in [row["name"] for row in describe_space(TinySpace)]


def test_conditional_hyperparameters_are_listed_with_their_condition() -> None:
    rows = {row["name"]: row for row in describe_space(get_space("fast"))}
    assert rows["sgd_nesterov_learning_rate"]["when"] == "optimizer = sgd_nesterov"
    assert rows["adamw_learning_rate"]["when"] == "optimizer = adamw"
    assert rows["width"]["when"] == ""
