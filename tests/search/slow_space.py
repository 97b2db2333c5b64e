"""A test-only space whose training steps are slow on purpose: a time budget, a kill or a lost
worker then lands inside a trial for certain. Other processes (workers) load it by its module path,
`--space tests.search.slow_space:slow-test-space`, with the pause in SLOW_SPACE_SECONDS_PER_STEP."""

from __future__ import annotations

import os
import time

from spaces import register_space
from spaces.fast import FastNet


@register_space("slow-test-space")
class SlowSpace(FastNet):
    """The fast space with a pause in every training step (`seconds_per_step`; none when it
    validates)."""

    description = "test only: slow steps"
    seconds_per_step = float(os.environ.get("SLOW_SPACE_SECONDS_PER_STEP", "0"))

    def build_features(self, hp, x):
        import keras
        import tensorflow as tf

        class Pause(keras.layers.Layer):
            def call(self, features, training=None):
                if not training:
                    return features
                # A real op in the compiled step: the pause happens as training runs, step by step.
                delay = tf.numpy_function(
                    lambda: time.sleep(SlowSpace.seconds_per_step) or 0.0, [], tf.float64
                )
                return features + tf.cast(tf.reshape(delay, []), features.dtype)

        return Pause(name="pause")(super().build_features(hp, x))
