"""Every trial's model is built in the run's precision, not just the first one."""

from __future__ import annotations

from pathlib import Path

import keras
import keras_tuner as kt
import pytest

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


@pytest.mark.slow
def test_promotions_continue_under_mixed_float16_from_the_split_on_the_device(
    tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU box's path, on the CPU: mixed_float16 (older GPUs' default) wraps the optimizer in Keras's
    LossScaleOptimizer, and a promotion stretches the schedule of the optimizer inside it; every
    trial trains from the split on the device (a GPU's default, --data-on device here), the loss
    scaling inside the device loop's compiled steps."""
    import json

    import pandas as pd

    from search import run_search
    from spaces import device_loop

    fits_on_device = []

    def counted(*args, **kwargs):
        fits_on_device.append(1)
        return fit_on_device(*args, **kwargs)

    fit_on_device = device_loop.fit_on_device
    monkeypatch.setattr(device_loop, "fit_on_device", counted)  # a spy: the real loop trains
    # 48 training images: float16 convolutions are slow on a CPU, and one promotion is the point.
    config = quick_search_config(
        tmp_path, tiny_npz, space="cnn", precision="mixed_float16", train_size=48, data_on="device"
    )
    try:
        result = run_search(config)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    kernels = env["hardware"]["kernels"]
    assert kernels["data"] == "device" and kernels["augmentation"] == "step"
    assert len(fits_on_device) == result.completed
    trials = pd.read_csv(tmp_path / "run" / "trials.csv", dtype={"trial_id": str})
    assert (trials["status"] == "COMPLETED").all(), trials[["trial_id", "status", "error"]]
    promoted = trials[trials["parent_trial"].notna()]
    assert len(promoted) >= 1 and result.completed == len(trials)
    records = [
        json.loads((tmp_path / "run" / "tuner" / f"trial_{t}" / "hypercnn.json").read_text())
        for t in promoted["trial_id"]
    ]
    assert all(r["precision"] == "mixed_float16" for r in records)
    assert any(r["continued_from"] in ("memory", "checkpoint") for r in records)


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        ([("NVIDIA H200", (9, 0))], "mixed_bfloat16"),  # Hopper: bf16 tensor cores, no loss scaling
        ([("NVIDIA A100-SXM4-80GB", (8, 0)), ("NVIDIA A100-SXM4-80GB", (8, 0))], "mixed_bfloat16"),
        ([("Tesla T4", (7, 5))], "mixed_float16"),  # Turing: float16 tensor cores only
        ([("NVIDIA A100", (8, 0)), ("Tesla V100", (7, 0))], "mixed_float16"),  # every GPU must run it
    ],
)
def test_auto_precision_on_gpus_prefers_bfloat16_where_tensor_cores_run_it(
    monkeypatch, gpus, expected
) -> None:
    """No GPU here: the GPUs the backend would report are given; the choice that follows is real."""
    from search import SearchConfig, hardware

    monkeypatch.setattr(hardware, "gpu_devices", lambda: gpus)
    acceleration = hardware.choose_acceleration(SearchConfig())
    assert acceleration.precision == expected and acceleration.jit_compile


@pytest.mark.parametrize(
    "setting",
    [
        ("ONEDNN_MAX_CPU_ISA", "avx2"),  # AVX-512 switched off: bf16 convolutions fail
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI"),  # AVX-512 without BF16: bf16 emulated, 3x slower
        ("TF_ENABLE_ONEDNN_OPTS", "0"),  # no oneDNN: Eigen's bf16 is no faster than float32
    ],
)
def test_auto_precision_on_a_cpu_is_float32_where_onednn_may_not_run_bfloat16(monkeypatch, setting) -> None:
    """The CPU's flags are given (this test runs on CPUs with and without AVX512-BF16); the
    environment that limits oneDNN is real, and so is the choice that follows."""
    from search import SearchConfig, hardware

    monkeypatch.setattr(hardware, "gpu_devices", lambda: [])
    monkeypatch.setattr(hardware, "cpu_flags", lambda: ["avx2", "avx512f", "avx512_bf16"])
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert hardware.choose_acceleration(SearchConfig()).precision == "mixed_bfloat16"
    monkeypatch.setenv(*setting)
    assert hardware.choose_acceleration(SearchConfig()).precision == "float32"
    assert setting[0] in hardware.training_device_line(hardware.choose_acceleration(SearchConfig()))


@pytest.mark.parametrize(
    ("flags", "setting", "expected"),
    [
        (["avx2", "avx512f", "avx512_bf16"], None, "float32/avx512"),
        (["avx2", "avx512f"], ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE"), "float32/avx512"),
        (["avx2", "avx512f"], ("ONEDNN_MAX_CPU_ISA", "avx2"), "float32/avx2"),  # how benches emulate AVX2
        (["avx2", "avx512f"], ("TF_ENABLE_ONEDNN_OPTS", "0"), "float32/avx2"),
        (["avx2", "fma"], None, "float32/avx2"),  # a CPU without AVX-512
        (["fp", "asimd"], None, "float32/other"),  # neither: no cost was measured there
    ],
)
def test_the_budget_picks_cost_key_names_the_float32_vector_width_onednn_runs(
    monkeypatch, flags, setting, expected
) -> None:
    """Width 24 costs 0.6 of the default's epoch in float32 under AVX2 and 0.74 with AVX-512 kernels:
    the budget picks' costs are read at this key. The flags are given; the environment is real."""
    from search import hardware

    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    if setting:
        monkeypatch.setenv(*setting)
    assert hardware.cost_key("float32", on_gpu=False) == expected
    assert hardware.cost_key("mixed_bfloat16", on_gpu=False) == "mixed_bfloat16"
    assert hardware.cost_key("float32", on_gpu=True) == "float32"  # a GPU's kernels: the precision only


TRAIN_ONE_STEP = """
import numpy as np, keras, keras_tuner as kt
from search import SearchConfig
from search.hardware import apply_acceleration, choose_acceleration
from spaces import get_space
from spaces.base import DataSpec
acceleration = choose_acceleration(SearchConfig())
apply_acceleration(acceleration)
data = DataSpec(num_classes=10, train_size=8, batch_size=8)
space = get_space("fast")(data, fit_verbose=0, plain_keras=True)
model = space.build(kt.HyperParameters())
images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
model.fit(images, keras.utils.to_categorical(np.arange(8) % 10, 10), epochs=1, verbose=0)
print("trained in", acceleration.precision)
"""


def test_a_search_on_a_cpu_with_avx512_switched_off_trains(tmp_path: Path) -> None:
    """ONEDNN_MAX_CPU_ISA=AVX2 (how a user keeps oneDNN off AVX-512, and how bench runs emulate a CPU
    without it): on an AVX512-BF16 CPU, auto precision once chose bfloat16 there, and the first
    convolution failed ("could not create a primitive descriptor"). oneDNN reads the cap when it
    starts, so the model trains in a process of its own."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_ONE_STEP], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trained in float32" in done.stdout
