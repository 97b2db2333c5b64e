"""The training recipe every space shares: input normalisation, augmentation, optimizer, loss.

Each knob is a KerasTuner hyper-parameter with a default that is known to train well, so the
first trial of any search (the space's defaults) is already a sensible model.
"""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
from keras import layers


def preprocess(hp: kt.HyperParameters, images: keras.KerasTensor, mean, std) -> keras.KerasTensor:
    """uint8 pixels in, normalised and (while training) augmented floats out.

    Living inside the model means the exported model takes raw uint8 images.
    """
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(images)
    # Per-channel standardisation with the training set's statistics, stored in the model.
    x = layers.Normalization(
        mean=np.asarray(mean) / 255.0, variance=(np.asarray(std) / 255.0) ** 2, name="normalize"
    )(x)
    # Flips: objects in CIFAR-10 are left/right symmetric, so this doubles the data for free.
    if hp.Boolean("augment_flip", default=True):
        x = layers.RandomFlip("horizontal", name="augment_flip")(x)
    # Translation: the cheapest augmentation that still pays off at 32x32.
    shift = hp.Float("augment_translate", 0.0, 0.15, step=0.05, default=0.1)
    if shift > 0:
        x = layers.RandomTranslation(shift, shift, fill_mode="reflect", name="augment_translate")(x)
    return x


def regularizer(hp: kt.HyperParameters) -> keras.regularizers.Regularizer | None:
    """L2 on conv and dense kernels; searched on a log scale because its useful range spans decades."""
    strength = hp.Float("l2", 1e-6, 1e-3, sampling="log", default=1e-4)
    return keras.regularizers.L2(strength)


def compile_model(hp: kt.HyperParameters, model: keras.Model, jit_compile: bool) -> None:
    learning_rate = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
