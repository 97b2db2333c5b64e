"""cnn: the classic CIFAR-10 CNN (conv-conv-pool blocks, dropout, L2, dense head), made searchable."""

from __future__ import annotations

import keras
import keras_tuner as kt
from keras import layers

from spaces import recipe, register_space
from spaces.base import SpaceHyperModel


@register_space("cnn")
class ClassicCNN(SpaceHyperModel):
    decoupled_decay = False  # the classic form: L2 on the kernels
    description = "classic CIFAR-10 CNN: conv-conv-pool blocks with dropout and L2, dense head (the baseline)"

    def build_features(self, hp: kt.HyperParameters, x: keras.KerasTensor) -> keras.KerasTensor:
        blocks = hp.Int("conv_blocks", 2, 4, default=3)
        filters = hp.Choice("filters", [16, 32, 48, 64], default=32)
        kernel_size = hp.Choice("kernel_size", [3, 5], default=3)
        batch_norm = hp.Boolean("batch_norm", default=True)
        dropout = hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.3)
        dense_units = hp.Choice("dense_units", [64, 128, 256, 512], default=256)
        norm = self.batch_norm(hp) if batch_norm else None
        l2 = recipe.l2_regularizer(hp)
        for block in range(blocks):
            # Double the width each time the resolution halves: constant work per block.
            width = filters * 2**block
            for conv in range(2):
                x = layers.Conv2D(
                    width,
                    kernel_size,
                    padding="same",
                    use_bias=not batch_norm,
                    kernel_regularizer=l2,
                    name=f"block{block + 1}_conv{conv + 1}",
                )(x)
                if batch_norm:
                    x = norm(f"block{block + 1}_bn{conv + 1}")(x)
                x = layers.Activation("relu", name=f"block{block + 1}_relu{conv + 1}")(x)
            x = layers.MaxPooling2D(name=f"block{block + 1}_pool")(x)
            if dropout > 0:
                x = layers.Dropout(dropout, name=f"block{block + 1}_dropout")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(dense_units, activation="relu", kernel_regularizer=l2, name="dense")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name="dense_dropout")(x)
        return x
