"""The shipped model: stock Keras layers, flip averaging that is exactly the mean over mirrors, and a
.keras file that loads and predicts the same on TensorFlow and on JAX (in fresh processes)."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import keras_tuner as kt
import numpy as np

from spaces import get_space
from spaces.base import DataSpec
from spaces.batch_stats import model_layers
from spaces.inference import inference_model
from spaces.layers import FusedBatchNormalization

BACKENDS = ("tensorflow", "jax")


def trained_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    space = get_space("fast")(DataSpec(num_classes=4, train_size=64, batch_size=32), fit_verbose=0)
    model = space.build(kt.HyperParameters())
    # A few steps, so batch-norm statistics and weights are not their symmetric initial values.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    model.fit(x, keras.utils.to_categorical(np.arange(64) % 4, 4), epochs=1, batch_size=32, verbose=0)
    return model


def test_flip_averaging_is_the_mean_of_image_and_mirror_and_loads_stock(tmp_path) -> None:
    model = trained_model()
    shipped = inference_model(model, flip_averaging=True)
    x = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    direct = model.predict(x, verbose=0)
    mirrored = model.predict(x[:, :, ::-1], verbose=0)
    assert np.abs(direct - mirrored).max() > 1e-4  # the model itself is not mirror-symmetric
    np.testing.assert_allclose(shipped.predict(x, verbose=0), (direct + mirrored) / 2, atol=1e-5)
    # A mirrored image gets the same averaged prediction as the image.
    np.testing.assert_allclose(
        shipped.predict(x[:, :, ::-1], verbose=0), shipped.predict(x, verbose=0), atol=1e-5
    )
    path = tmp_path / "best.keras"
    shipped.save(path)
    reloaded = keras.models.load_model(path)
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in model_layers(reloaded))
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), shipped.predict(x, verbose=0), atol=1e-6)
    assert_loads_with_plain_keras(path, x, shipped.predict(x, verbose=0))


def test_without_flip_averaging_the_model_is_unchanged(tmp_path) -> None:
    model = trained_model()
    shipped = inference_model(model, flip_averaging=False)
    x = np.random.default_rng(2).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(shipped.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert not shipped.compiled  # the optimizer's schedule is HyperCNN's class: not shipped
    path = tmp_path / "best.keras"
    shipped.save(path)
    assert_loads_with_plain_keras(path, x, shipped.predict(x, verbose=0))


def assert_loads_with_plain_keras(path, x: np.ndarray, expected: np.ndarray) -> None:
    """In a fresh interpreter that imports nothing of HyperCNN, on each Keras backend: it loads and
    predicts what the model predicted where it was trained."""
    np.save(path.with_suffix(".images.npy"), x)
    code = (
        "import sys, keras, numpy as np; model = keras.models.load_model(sys.argv[1]); "
        "np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))"
    )
    for backend in BACKENDS:
        predicted = path.with_suffix(f".{backend}.npy")
        args = [sys.executable, "-c", code, str(path), str(path.with_suffix(".images.npy")), str(predicted)]
        env = {**os.environ, "KERAS_BACKEND": backend}
        result = subprocess.run(args, capture_output=True, text=True, cwd="/", env=env)
        assert result.returncode == 0, f"{backend}: {result.stderr[-2000:]}"
        np.testing.assert_allclose(np.load(predicted), expected, atol=1e-5, err_msg=backend)
