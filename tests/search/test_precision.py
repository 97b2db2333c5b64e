"""Every trial's model is built in the run's precision, not just the first one."""

from __future__ import annotations

from pathlib import Path

import keras
import keras_tuner as kt

from search.data import load_data
from search.run import build_tuner
from tests.conftest import quick_search_config


def test_each_trial_build_keeps_the_chosen_precision(tmp_path: Path, tiny_npz: Path) -> None:
    config = quick_search_config(tmp_path, tiny_npz, precision="mixed_bfloat16")
    tuner = build_tuner(config, load_data(config))
    try:
        for _ in range(2):
            # KerasTuner's own build step: it clears the Keras session (and with it the global
            # dtype policy) before building each trial's model.
            model = tuner.build_trial_model(kt.HyperParameters())
            assert model.dtype_policy.name == "mixed_bfloat16"
            conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
            assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
