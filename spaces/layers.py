"""Faster kernels for the layers the spaces use: the same function and weights as stock Keras.

Keras 3 computes batch norm in training as moments plus a chain of elementwise ops, each one a
pass over the activations, forward and backward. TensorFlow has one fused kernel for it
(FusedBatchNormV3, oneDNN on CPU, cuDNN on GPU). Measured fwd+bwd on a 128x32x32x32 batch on 2 CPU
cores: 25 ms stock vs 9 ms fused. Keras's input standardisation is a subtract and a divide by
per-channel vectors in the compute dtype; one float32 multiply-add by full-image-shape constants
does the same in a third of the time (1.06 -> 0.32 ms per 128-image uint8 batch, bfloat16 out).
Exports swap the stock layers back in (spaces.layers.to_stock_keras), so a saved model needs
nothing from HyperCNN to load. Both replacements run only on the TensorFlow backend (spaces.kernels
picks them there alone) and import TensorFlow only when they run; elsewhere they are the stock layers.
"""

from __future__ import annotations

import keras
from keras import layers

from spaces.augment_ops import TrainingAugmentation


class FusedBatchNormalization(layers.BatchNormalization):
    """keras.layers.BatchNormalization, trained with TensorFlow's fused kernel where it applies."""

    def _fusable(self, inputs, training, mask) -> bool:
        return (
            bool(training)
            and self.trainable
            and mask is None
            and not self.renorm
            and keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones([channels])
        offset = self.beta if self.center else tf.zeros([channels])
        # The kernel takes float16/bfloat16 activations with float32 statistics, as mixed precision needs.
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, scale, offset, epsilon=self.epsilon, is_training=True
        )
        # The v1 kernel returns the sample variance (Bessel-corrected); Keras's moving variance
        # averages the population variance, which normalised the batch.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), "float32")
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)


class FastNormalization(layers.Normalization):
    """keras.layers.Normalization, computed as x * (1 / std) + (-mean / std) in float32.

    The scale and offset are broadcast to the whole image shape, so the multiply-add streams over
    contiguous memory instead of cycling through a 3-element vector per pixel (TensorFlow's CPU
    kernels are several times slower on the latter).
    """

    def call(self, inputs):
        if self.invert or keras.backend.backend() != "tensorflow" or None in inputs.shape[1:]:
            return super().call(inputs)
        import tensorflow as tf

        mean = tf.cast(self.convert_weight(self.mean), "float32")
        variance = tf.cast(self.convert_weight(self.variance), "float32")
        scale = 1.0 / tf.maximum(tf.sqrt(variance), keras.backend.epsilon())
        image_shape = [1, *inputs.shape[1:]]
        scale, offset = tf.broadcast_to(scale, image_shape), tf.broadcast_to(-mean * scale, image_shape)
        return tf.cast(tf.cast(inputs, "float32") * scale + offset, self.compute_dtype)


def batch_norm(
    momentum: float, name: str, kernel: str = "fused", dtype: str | None = None
) -> layers.BatchNormalization:
    """A batch-norm layer with the kernel spaces.kernels chose: "fused" or "stock"."""
    cls = FusedBatchNormalization if kernel == "fused" else layers.BatchNormalization
    return cls(momentum=momentum, name=name, dtype=dtype)


def to_stock_keras(model: keras.Model) -> keras.Model:
    """The same model with stock Keras layers, the same weights, float32 compute and no optimizer:
    loads without HyperCNN installed, and converts to TFLite and ONNX, which have no bfloat16
    convolutions (a model trained in mixed bfloat16, on a GPU or a CPU with AVX512-BF16, failed to)."""

    def float32(config: dict) -> dict:
        # Mixed precision is how it trained; the weights are float32 already.
        if keras.dtype_policies.get(config.get("dtype")).name.startswith("mixed_"):
            config["dtype"] = "float32"
        return config

    def stock(layer: layers.Layer) -> layers.Layer:
        if isinstance(layer, TrainingAugmentation):
            # Training only: the shipped model holds no augmentation.
            return layers.Identity(name=layer.name)
        config = float32(layer.get_config())
        if isinstance(layer, FusedBatchNormalization):
            return layers.BatchNormalization.from_config(config)
        if isinstance(layer, FastNormalization):
            return layers.Normalization.from_config(config)
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=stock)
    clone.set_weights(model.get_weights())
    # A new Model over the same layers, uncompiled: clone_model copies the compile state, and the
    # optimizer's schedule is HyperCNN's own class, which plain Keras cannot load.
    return keras.Model(clone.input, clone.output, name=model.name)
