"""Precise batch norm: after recomputation, the moving statistics are those of the final weights."""

from __future__ import annotations

import dataclasses

import keras
import keras_tuner as kt
import numpy as np
import pytest
from keras import layers

from spaces import get_space
from spaces.augment_ops import TrainingAugmentation
from spaces.base import DataSpec
from spaces.batch_stats import recompute_batch_norm_statistics
from spaces.kernels import Kernels

IMAGES = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)


def two_norm_model(dropout: float, augment: bool = True) -> keras.Model:
    """augment -> conv -> BN -> dropout -> conv -> BN -> classes; BN momentum 0.99 leaves the stats
    at 0 and 1."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3), dtype="uint8")
    augmentation = TrainingAugmentation(flip=True, crop=2, name="augment")
    augmentation.active = augment
    x = layers.Rescaling(1 / 255)(augmentation(inputs))
    x = layers.Conv2D(4, 3, name="conv1")(x)
    x = layers.BatchNormalization(momentum=0.99, name="bn1")(x)
    x = layers.Dropout(dropout, name="drop")(layers.ReLU()(x))
    x = layers.Conv2D(4, 3, name="conv2")(x)
    x = layers.BatchNormalization(momentum=0.99, name="bn2")(x)
    outputs = layers.Dense(3)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


@pytest.mark.backend_neutral
def test_the_first_layers_statistics_average_the_batches_weighted_by_their_size() -> None:
    model = two_norm_model(dropout=0.5)
    used = recompute_batch_norm_statistics(model, IMAGES, batch_size=16, seed=3)
    assert used == 40
    # The images it drew with that seed, in batches of 16, 16 and 8.
    chosen = IMAGES[np.random.default_rng(3).permutation(40)]
    conv1 = keras.Model(model.inputs, model.get_layer("conv1").output)
    batches = [np.asarray(conv1(chosen[start : start + 16])) for start in (0, 16, 32)]
    weights = np.array([16, 16, 8]) / 40
    mean = sum(w * b.mean(axis=(0, 1, 2)) for w, b in zip(weights, batches, strict=True))
    variance = sum(w * b.var(axis=(0, 1, 2)) for w, b in zip(weights, batches, strict=True))
    bn1 = model.get_layer("bn1")
    np.testing.assert_allclose(np.asarray(bn1.moving_mean), mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(bn1.moving_variance), variance, rtol=1e-4, atol=1e-6)


@pytest.mark.backend_neutral
def test_with_one_batch_inference_equals_training_mode_without_dropout() -> None:
    model = two_norm_model(dropout=0.5)
    # The same weights with no dropout or augmentation, in training mode: every BN normalises by this
    # batch's moments.
    reference = two_norm_model(dropout=0.0, augment=False)
    reference.set_weights(model.get_weights())
    expected = np.asarray(reference(IMAGES, training=True))
    assert not np.allclose(np.asarray(model(IMAGES, training=False)), expected, atol=1e-3)
    recompute_batch_norm_statistics(model, IMAGES, batch_size=len(IMAGES))
    np.testing.assert_allclose(np.asarray(model(IMAGES, training=False)), expected, atol=1e-4)
    # The pass changes nothing else: momentum, dropout rate and augmentation are back.
    assert model.get_layer("bn1").momentum == 0.99 and model.get_layer("drop").rate == 0.5
    assert model.get_layer("augment").active


def test_a_space_model_after_a_few_steps_predicts_as_it_trained() -> None:
    """A space's own model (HyperCNN's fused batch-norm kernel included) after three steps: its moving
    statistics are still mostly their start values, and inference disagrees with training mode until
    they are recomputed."""
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(1).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    labels = keras.utils.to_categorical(np.arange(64) % 4, 4)
    spec = DataSpec(num_classes=4, train_size=64, batch_size=64)
    # Without augmentation inside the model: training mode is then a deterministic reference.
    kernels = dataclasses.replace(Kernels.for_backend(), augmentation="pipeline")
    space = get_space("fast")(spec, fit_verbose=0, kernels=kernels)
    hp = kt.HyperParameters()
    hp.Fixed("width", 8)
    hp.Fixed("dropout", 0.0)
    hp.values["tuner/epochs"] = 3
    model = space.build(hp)
    model.fit(images, labels, batch_size=64, epochs=3, verbose=0)
    in_training = np.asarray(model(images, training=True)).argmax(1)
    assert (np.asarray(model(images, training=False)).argmax(1) != in_training).mean() > 0.1
    assert recompute_batch_norm_statistics(model, images, batch_size=64) == 64
    np.testing.assert_array_equal(np.asarray(model(images, training=False)).argmax(1), in_training)


@pytest.mark.backend_neutral
def test_a_model_without_batch_norm_is_left_alone() -> None:
    inputs = keras.Input((8, 8, 3), dtype="uint8")
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(layers.Rescaling(1 / 255)(inputs))))
    before = [w.copy() for w in model.get_weights()]
    assert recompute_batch_norm_statistics(model, IMAGES, batch_size=16) == 0
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
