"""Do the internals in search/compat.py that exist for speed still earn their place on this machine?

Three of them are there only for speed (the others are needed for behaviour: one-line failures, the
defaults as first trial, promotions that continue their optimizer, the fused kernels' slots, which
spaces.kernels already times). Each is timed with and without, interleaved, on the `fast` space's
default model; one is kept where "with" takes at most 90 % of "without":

- build_compile_metrics: a new trial's build, compile and first training step (the step's trace);
- keeping_tensorflow_kernel_cache: an in-memory promotion's first step after the next trial's
  session clear;
- gc.freeze (search.tuner): one full garbage collection with TensorFlow and Keras loaded.

    .venv/bin/python bench/internals.py          # about 2 minutes; results/bench_internals.csv
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from search.quiet import load_keras_backend  # noqa: E402

load_keras_backend()

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from machine import machine_row, measure_conv_peak, merge_rows  # noqa: E402

from search import SearchConfig, compat  # noqa: E402
from search.hardware import apply_acceleration, choose_acceleration  # noqa: E402
from search.pipeline import make_dataset  # noqa: E402
from spaces import get_space  # noqa: E402
from spaces.base import DataSpec  # noqa: E402
from spaces.kernels import select_kernels  # noqa: E402

KEEP_IF_AT_MOST = 0.9
IMAGES = 1024


def fast_space(precision: str):
    spec = DataSpec(num_classes=10, train_size=IMAGES, batch_size=128)
    return get_space("fast")(
        spec, fit_verbose=0, precision=precision, kernels=select_kernels(precision, "~/.cache/hypercnn")
    )


def one_step_data(x, y):
    return make_dataset(x[:128], y[:128], 10, 128)


def new_trial_seconds(space, data, prebuild_metrics: bool) -> float:
    """Build + compile + the first training step of a new model (its trace included)."""
    original = compat.build_compile_metrics
    if not prebuild_metrics:
        compat.build_compile_metrics = lambda model: None
    try:
        keras.backend.clear_session()
        started = time.perf_counter()
        hp = kt.HyperParameters()
        hp.values["tuner/epochs"] = 1
        model = space.build(hp)
        space.fit(hp, model, data, epochs=1)
        return time.perf_counter() - started
    finally:
        compat.build_compile_metrics = original


def promotion_first_step_seconds(space, data, keep_cache: bool) -> float:
    """A trained model, then the next trial's session clear and build, then the first model trains on
    (an in-memory promotion): the seconds of its first step."""
    keras.backend.clear_session()
    hp = kt.HyperParameters()
    hp.values["tuner/epochs"] = 2
    parent = space.build(hp)
    space.fit(hp, parent, data, epochs=1)
    with compat.keeping_tensorflow_kernel_cache(keep_cache):
        keras.backend.clear_session(free_memory=True)
    other = space.build(hp)
    space.fit(hp, other, data, epochs=1)
    started = time.perf_counter()
    space.fit(hp, parent, data, initial_epoch=1, epochs=2)
    return time.perf_counter() - started


def full_collection_seconds(frozen: bool) -> float:
    gc.collect()
    if frozen:
        gc.freeze()
    try:
        started = time.perf_counter()
        gc.collect()
        return time.perf_counter() - started
    finally:
        gc.unfreeze()


def paired(measure, repeats: int) -> tuple[float, float]:
    """Median seconds with and without, alternating which goes first."""
    with_, without = [], []
    for round_ in range(repeats):
        for arm in (True, False) if round_ % 2 == 0 else (False, True):
            (with_ if arm else without).append(measure(arm))
    return statistics.median(with_), statistics.median(without)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--output", default=str(ROOT / "results" / "bench_internals.csv"))
    args = parser.parse_args()

    peak, _ = measure_conv_peak("float32")
    acceleration = choose_acceleration(SearchConfig())
    apply_acceleration(acceleration)
    space = fast_space(acceleration.precision)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (IMAGES, 32, 32, 3), dtype=np.uint8)
    data = one_step_data(x, np.arange(IMAGES) % 10)
    new_trial_seconds(space, data, True)  # warm up: first imports, first kernels
    measures = {
        "build_compile_metrics (new trial: build, compile, first step)": lambda arm: new_trial_seconds(
            space, data, arm
        ),
        "keeping_tensorflow_kernel_cache (promotion's first step)": lambda arm: promotion_first_step_seconds(
            space, data, arm
        ),
        "gc.freeze (one full collection)": full_collection_seconds,
    }
    rows = []
    for name, measure in measures.items():
        with_, without = paired(measure, args.repeats)
        verdict = "keep" if with_ <= KEEP_IF_AT_MOST * without else "no gain beyond noise"
        print(f"{name}: with {1000 * with_:.1f} ms, without {1000 * without:.1f} ms: {verdict}", flush=True)
        rows.append(
            {
                "internal": name,
                "with_ms": round(1000 * with_, 1),
                "without_ms": round(1000 * without, 1),
                "ratio": round(with_ / without, 3),
                "verdict": verdict,
                "repeats": args.repeats,
            }
        )
    table = pd.DataFrame(rows)
    for column, value in machine_row(peak, acceleration.precision).items():
        table[column] = value
    target = Path(args.output)
    merge_rows(target, table, key="internal").to_csv(target, index=False)
    print(f"written: {target}")


if __name__ == "__main__":
    main()
