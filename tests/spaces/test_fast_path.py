"""HyperCNN's fast training path must not change what a model learns.

Fast path: uint8 input, augmentation on uint8 batches in tf.data, fused batch-norm kernels.
Plain path: the same network as plain Keras writes it (float32 arrays into model.fit, Keras
augmentation layers in the model, stock layers). Same data, seed, epochs: same accuracy within noise.
"""

from __future__ import annotations

import dataclasses

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from search import SearchConfig
from search.hardware import choose_acceleration
from search.pipeline import make_dataset
from spaces import get_space
from spaces.augment import (
    Augmentation,
    augment_batch,
    augment_dataset,
    random_crop,
    random_cutout,
    random_flip,
)
from spaces.base import DataSpec
from spaces.kernels import Kernels
from spaces.layers import FastNormalization, FusedBatchNormalization, to_stock_keras
from tests.spaces.colours import overlapping_colours


def train_and_score(path: str, x, y, x_test, y_test, epochs: int = 4) -> float:
    """path: "plain" (Keras as a script writes it), "pipeline" (HyperCNN's TensorFlow path: tf.data
    augmentation) or "step" (augmentation inside the training step, as on JAX and GPUs)."""
    keras.utils.set_random_seed(0)
    plain_keras = path == "plain"
    # The fast path trains in the precision HyperCNN picks for this machine (bf16 on a CPU with
    # native bf16, float16 on a GPU); plain Keras trains in float32.
    precision = "float32" if plain_keras else choose_acceleration(SearchConfig()).precision
    keras.mixed_precision.set_global_policy(precision)
    spec = DataSpec(num_classes=4, train_size=len(x), batch_size=64)
    kernels = None if plain_keras else dataclasses.replace(Kernels.for_backend(), augmentation=path)
    space = get_space("fast")(spec, fit_verbose=0, plain_keras=plain_keras, kernels=kernels)
    hp = kt.HyperParameters()
    hp.Fixed("width", 16)  # small and quick; every other knob at the space's default
    hp.values["tuner/epochs"] = epochs
    try:
        model = space.build(hp)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    if plain_keras:
        onehot = keras.utils.to_categorical(y, 4)
        model.fit(x.astype("float32"), onehot, batch_size=64, epochs=epochs, shuffle=True, verbose=0)
        probabilities = model.predict(x_test.astype("float32"), verbose=0)
    else:
        space.fit(hp, model, make_dataset(x, y, 4, 64, shuffle=True, seed=0), epochs=epochs)
        probabilities = model.predict(x_test, verbose=0)
    return float((probabilities.argmax(1) == y_test).mean())


@pytest.mark.slow
def test_fast_in_step_and_plain_paths_reach_the_same_accuracy() -> None:
    x, y = overlapping_colours(1200, seed=0)
    x_test, y_test = overlapping_colours(600, seed=1)
    fast = train_and_score("pipeline", x, y, x_test, y_test)
    in_step = train_and_score("step", x, y, x_test, y_test)
    plain = train_and_score("plain", x, y, x_test, y_test)
    # Chance is 0.25 and the best possible about 0.75; measured: fast 0.72, plain 0.71.
    assert min(fast, in_step, plain) > 0.6, (fast, in_step, plain)
    # 600 test images: one binomial standard error near 0.72 is 0.018; allow about three.
    assert abs(fast - plain) < 0.06 and abs(in_step - fast) < 0.06, (fast, in_step, plain)


@pytest.mark.parametrize("flip", [False, True])
def test_pipeline_crop_is_a_shifted_window_of_the_reflect_padded_image(flip: bool) -> None:
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3)), tf.uint8)
    cropped = random_crop(images, 4, flip=flip).numpy()
    padded = np.pad(images.numpy(), [(0, 0), (4, 4), (4, 4), (0, 0)], mode="reflect")
    mirrored = 0
    for image, source in zip(cropped, padded, strict=True):
        windows = [source[top : top + 32, left : left + 32] for top in range(9) for left in range(9)]
        as_is = any(np.array_equal(window, image) for window in windows)
        mirror = any(np.array_equal(window[:, ::-1], image) for window in windows)
        assert as_is or mirror, "each crop is some 32x32 window of the padded image, or its mirror"
        mirrored += mirror and not as_is
    if flip:
        assert 10 < mirrored < 54  # about half, one binomial draw of 64
    else:
        assert mirrored == 0


def test_pipeline_flip_and_cutout() -> None:
    images = tf.constant(np.random.default_rng(1).integers(0, 250, (64, 32, 32, 3)), tf.uint8)
    flipped = random_flip(images).numpy()
    same = [np.array_equal(a, b) for a, b in zip(flipped, images.numpy(), strict=True)]
    mirrored = [np.array_equal(a, b[:, ::-1]) for a, b in zip(flipped, images.numpy(), strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True)) and 10 < sum(mirrored) < 54

    cut = random_cutout(images, probability=1.0, fill=(255, 255, 255)).numpy()
    filled = (cut == 255).all(axis=-1).mean(axis=(1, 2))  # images hold no 255 of their own
    assert (filled > 0).all() and (filled <= 0.16).all()
    assert augment_batch(images, Augmentation(flip=False, crop=0, cutout=0.0)) is images


def test_exported_layers_are_stock_keras_with_the_same_outputs() -> None:
    spec = DataSpec(num_classes=4, train_size=64, batch_size=32)
    space = get_space("resnet")(spec, fit_verbose=0)
    model = space.build(kt.HyperParameters())
    assert any(isinstance(layer, FusedBatchNormalization) for layer in model.layers)
    assert isinstance(model.get_layer("normalize"), FastNormalization)
    stock = to_stock_keras(model)
    assert not any(isinstance(layer, FusedBatchNormalization | FastNormalization) for layer in stock.layers)
    assert type(stock.get_layer("normalize")) is keras.layers.Normalization
    x, _ = overlapping_colours(8, seed=2)
    np.testing.assert_allclose(stock.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_fast_standardization_computes_what_keras_normalization_does(precision: str) -> None:
    mean, variance = np.array([125.3, 123.0, 113.9]), np.array([63.0, 62.1, 66.7]) ** 2
    images = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    fast = FastNormalization(mean=mean, variance=variance, dtype=precision)(images)
    stock = keras.layers.Normalization(mean=mean, variance=variance, dtype=precision)(images)
    assert fast.dtype == stock.dtype
    expected = (images - mean) / np.sqrt(variance)
    # bfloat16 rounds values near 2 to multiples of 2^-6 (8 significant bits): allow two such steps.
    atol = 1e-5 if precision == "float32" else 2**-5
    np.testing.assert_allclose(np.asarray(fast, "float32"), expected, atol=atol)
    np.testing.assert_allclose(np.asarray(stock, "float32"), expected, atol=atol)


def test_the_training_pipeline_runs_without_the_autotuner() -> None:
    """Its shutdown stalled ~1 s at the end of some fits; the augmentation stage inherits the option."""
    x, y = overlapping_colours(64, seed=0)
    dataset = make_dataset(x, y, 4, 16, shuffle=True)
    augmented = augment_dataset(dataset, Augmentation(crop=4))
    assert not dataset.options().autotune.enabled
    assert not augmented.options().autotune.enabled
    images, labels = next(iter(augmented))
    assert images.shape == (16, 32, 32, 3) and labels.shape == (16, 4)


def test_several_steps_per_call_train_exactly_like_one() -> None:
    """Long trainings run 16 steps per call of the compiled step: the same steps, the same weights.
    20 steps per epoch: one full call of 16 and a partial one of 4."""
    from spaces import recipe

    assert recipe.steps_per_execution(recipe.MULTI_STEP_MIN_STEPS) == recipe.STEPS_PER_EXECUTION
    assert recipe.steps_per_execution(recipe.MULTI_STEP_MIN_STEPS - 1) == 1
    x, y = overlapping_colours(640, seed=2)
    epochs = recipe.MULTI_STEP_MIN_STEPS // 20  # built for a long training, so it picks 16 per call
    spec = DataSpec(num_classes=4, train_size=len(x), batch_size=32)
    space = get_space("fast")(spec, fit_verbose=0)
    weights = {}
    for per_call in (recipe.STEPS_PER_EXECUTION, 1):
        keras.utils.set_random_seed(0)
        hp = kt.HyperParameters()
        hp.Fixed("width", 16)
        hp.values["tuner/epochs"] = epochs
        model = space.build(hp)
        assert model.steps_per_execution == recipe.STEPS_PER_EXECUTION
        if per_call == 1:  # the same model and optimizer, compiled for one step per call
            model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
        # model.fit, not space.fit: the augmentation's random draws differ between two fits in one
        # process, and the point here is the step loop alone.
        history = model.fit(
            make_dataset(x, y, 4, 32, shuffle=True, seed=0), epochs=2, shuffle=False, verbose=0
        )
        assert int(model.optimizer.iterations) == 40 and len(history.history["loss"]) == 2
        weights[per_call] = model.get_weights()
    for multi, single in zip(weights[recipe.STEPS_PER_EXECUTION], weights[1], strict=True):
        np.testing.assert_allclose(multi, single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("precision", "tolerance"), [("float32", 1e-4), ("mixed_bfloat16", 5e-2)])
def test_fused_batch_norm_trains_like_keras_batch_norm(precision: str, tolerance: float) -> None:
    """In training mode (where the fused kernel runs): the same outputs, input and weight gradients,
    and moving statistics as keras.layers.BatchNormalization."""
    from spaces.layers import batch_norm

    rng = np.random.default_rng(4)
    inputs = tf.constant(rng.normal(3.0, 2.0, (8, 6, 6, 5)), "float32")
    # A loss with non-trivial gradients for every input and weight (a plain sum would give gamma a
    # zero gradient, since normalised activations sum to zero).
    weights = tf.constant(rng.normal(size=(8, 6, 6, 5)), "float32")
    gamma = rng.uniform(0.5, 1.5, 5).astype("float32")
    results = []
    for kernel in ("fused", "stock"):
        layer = batch_norm(0.9, "bn", kernel=kernel, dtype=precision)
        layer.build(inputs.shape)
        layer.gamma.assign(gamma)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(tf.cast(inputs, layer.compute_dtype), training=True)
            loss = tf.reduce_sum(tf.cast(outputs, "float32") * weights)
        grads = tape.gradient(loss, [inputs, layer.gamma, layer.beta])
        results.append([outputs, *grads, layer.moving_mean, layer.moving_variance])
    assert type(batch_norm(0.9, "bn", kernel="fused")) is FusedBatchNormalization
    for fused, stock in zip(*results, strict=True):
        np.testing.assert_allclose(
            np.asarray(tf.cast(fused, "float32")),
            np.asarray(tf.cast(stock, "float32")),
            atol=tolerance,
            rtol=tolerance,
        )
