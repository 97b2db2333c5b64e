"""The model HyperCNN ships: stock Keras layers, and optionally averaged over the mirror image.

Flip averaging (test-time augmentation): a net trained with random horizontal flips sees an image
and its mirror as equally likely, so averaging its two predictions removes some of its noise for
twice the inference cost. Measured on the search-quality protocol (fast defaults, 26 epochs on
12,000 images, 10,000 local test images): 80.13 % alone, 81.37 % averaged.

The mirror is a fixed anti-identity matrix applied along the width axis (Permute, Dense,
Permute): stock layers only, so best.keras still loads with plain ``keras.models.load_model``,
and exact, since each output pixel is one input pixel times 1.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from spaces.layers import to_stock_keras

STANDARDIZE_LAYER = "normalize"


def mirror_averaged(model: keras.Model) -> keras.Model:
    """uint8 images in, the mean of the model's probabilities for each image and its mirror out."""
    standardize = model.get_layer(STANDARDIZE_LAYER)
    # Everything after standardising, as one model: run twice, on the image and on its mirror.
    body = keras.Model(standardize.output, model.output, name=f"{model.name}_body")
    images = keras.Input(model.input_shape[1:], dtype=model.inputs[0].dtype, name="image")
    x = standardize(images)
    width = model.input_shape[2]
    mirror = layers.Dense(width, use_bias=False, trainable=False, dtype="float32", name="mirror_width")
    # (batch, height, width, channels) -> width last -> reversed by the anti-identity -> back.
    mirrored = layers.Permute((1, 3, 2), name="width_last")(x)
    mirrored = mirror(mirrored)
    mirrored = layers.Permute((1, 3, 2), name="width_back")(mirrored)
    averaged = layers.Average(name="probabilities")([body(x), body(mirrored)])
    mirror.set_weights([np.eye(width, dtype="float32")[::-1]])
    return keras.Model(images, averaged, name=f"{model.name}_flip_averaged")


def inference_model(model: keras.Model, flip_averaging: bool) -> keras.Model:
    """What gets tested and exported: the trained model with stock layers in float32 (however it
    trained: spaces.layers.to_stock_keras), mirror-averaged or not."""
    trained_in = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")  # for the layers built here too
    try:
        stock = to_stock_keras(model)
        return mirror_averaged(stock) if flip_averaging else stock
    finally:
        keras.mixed_precision.set_global_policy(trained_in)
