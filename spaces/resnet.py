"""resnet: a residual net for 32x32 images (3x3 stem, no 7x7 stride-2 ImageNet stem)."""

from __future__ import annotations

from collections.abc import Callable

import keras
import keras_tuner as kt
from keras import layers

from spaces import register_space
from spaces.base import SpaceHyperModel

Norm = Callable[[str], layers.Layer]  # name -> a batch-norm layer (SpaceHyperModel.batch_norm)


def _bn_relu(x: keras.KerasTensor, norm: Norm, name: str) -> keras.KerasTensor:
    x = norm(f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def residual_block(
    x: keras.KerasTensor, width: int, stride: int, pre_activation: bool, norm: Norm, name: str
) -> keras.KerasTensor:
    """The basic two-conv block; a 1x1 projection where the shape changes."""
    reshape = stride != 1 or x.shape[-1] != width
    if pre_activation:  # He et al. 2016 (v2): BN-ReLU before each conv, identity path kept clean
        y = _bn_relu(x, norm, f"{name}_pre")
        shortcut = layers.Conv2D(width, 1, stride, use_bias=False, name=f"{name}_proj")(y) if reshape else x
        y = layers.Conv2D(width, 3, stride, padding="same", use_bias=False, name=f"{name}_conv1")(y)
        y = _bn_relu(y, norm, f"{name}_mid")
        y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
        return layers.Add(name=f"{name}_add")([y, shortcut])
    y = layers.Conv2D(width, 3, stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = _bn_relu(y, norm, f"{name}_mid")
    y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = norm(f"{name}_bn2")(y)
    shortcut = x
    if reshape:
        shortcut = layers.Conv2D(width, 1, stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = norm(f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


@register_space("resnet")
class ResNet(SpaceHyperModel):
    description = "residual net with a 32x32 stem: searchable stages, width, blocks per stage, pre-activation"

    def build_features(self, hp: kt.HyperParameters, x: keras.KerasTensor) -> keras.KerasTensor:
        width = hp.Choice("width", [16, 32, 48, 64], default=32)
        stages = hp.Int("stages", 2, 4, default=3)
        blocks = hp.Int("blocks_per_stage", 1, 3, default=1)
        pre_activation = hp.Boolean("pre_activation", default=True)
        dropout = hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.0)
        norm = self.batch_norm(hp)
        # 3x3 stride-1 stem: at 32x32 an ImageNet stem would throw away 15/16 of the pixels at once.
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(x)
        if not pre_activation:
            x = _bn_relu(x, norm, "stem")
        for stage in range(stages):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                x = residual_block(
                    x, width * 2**stage, stride, pre_activation, norm, f"s{stage + 1}b{block + 1}"
                )
        if pre_activation:
            x = _bn_relu(x, norm, "final")
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name="dropout")(x)
        return x
