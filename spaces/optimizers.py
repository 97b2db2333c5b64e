"""SGD and AdamW whose per-variable update is one TensorFlow kernel instead of a chain of Keras ops.

Keras 3 writes each update as 5 to 12 backend ops per variable. Traced into a training step, that
was more than half of a new model's train-step tracing (fast space, 10 models under a profiler:
3.5 of 6.6 s), and every step then runs all those small ops. TensorFlow's fused kernels do the same
arithmetic (ResourceApplyKerasMomentum, ResourceApplyAdam; XLA compiles both). Weight decay stays
Keras's own, applied before the update. The optimizers keep the stock classes' variables, so their
checkpoints are interchangeable; tests/spaces/test_optimizers.py checks the updates are equal.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from search import compat


def _fusable(gradient) -> bool:
    return keras.backend.backend() == "tensorflow" and not isinstance(gradient, tf.IndexedSlices)


@keras.saving.register_keras_serializable(package="hypercnn")
class FusedSGD(keras.optimizers.SGD):
    """keras.optimizers.SGD; with momentum, its update runs as ResourceApplyKerasMomentum."""

    def update_step(self, gradient, variable, learning_rate):
        if self.momentum == 0 or not _fusable(gradient):
            return super().update_step(gradient, variable, learning_rate)
        momentum = compat.optimizer_slot(self, "momentums", variable)
        dtype = variable.dtype
        # accum = momentum * accum - lr * grad; var += accum (Nesterov: momentum * accum - lr * grad)
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle,
            accum=momentum.handle,
            lr=tf.cast(learning_rate, dtype),
            grad=tf.cast(gradient, dtype),
            momentum=tf.cast(self.momentum, dtype),
            use_nesterov=self.nesterov,
        )


@keras.saving.register_keras_serializable(package="hypercnn")
class FusedAdamW(keras.optimizers.AdamW):
    """keras.optimizers.AdamW; without amsgrad, its update runs as ResourceApplyAdam."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or not _fusable(gradient):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        # m, v: moving moments; var -= lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + eps)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=compat.optimizer_slot(self, "_momentums", variable).handle,
            v=compat.optimizer_slot(self, "_velocities", variable).handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )
