"""Training throughput: HyperCNN's path against plain model.fit, and against the machine's peak.

For the default configuration of every registered space, on the same machine in one run:

- plain:    the same network as a plain Keras script writes it: float32 NumPy arrays into
            ``model.fit(x, y, batch_size=...)``, augmentation as Keras preprocessing layers inside the
            model, stock layers and optimizers, Keras's default compile settings; once in float32, and
            once in the same mixed precision as HyperCNN's path where that is not float32 (the
            headline ratio compares like with like; the float32 ratio is shown beside it);
- hypercnn: HyperCNN's training path: uint8 images held in memory, a tf.data pipeline that augments
            whole uint8 batches and prefetches, the precision and the kernels HyperCNN picks for this
            machine (spaces.kernels: fused or stock, timed on the machine); on TensorFlow also the
            same path augmenting inside the training step instead (keras.ops, the JAX/GPU way), to
            decide where augmentation runs by measurement. With KERAS_BACKEND=jax, the JAX path:
            the split on the device and many steps per compiled call (spaces.device_loop), timed
            against the same model fed host batches by Keras's own loop, to decide where the data
            lives by measurement; and the first epoch's compile seconds (XLA) beyond a steady one.

Same model and batch size; 1 warm-up epoch, then 3 timed, of 25,600 images each (about half a CIFAR-10
epoch; 800 steps in all, so HyperCNN runs them 16 per call as it does for any training of 400 steps
or more). Also each model's training FLOPs per image (3x the forward pass: forward, input gradients,
weight gradients; the stem convolution has no input gradient), and MFU against the peak this
machine measures on a large 3x3 convolution (at the start, then again after each space's epochs:
each space's MFU uses the mean of the measurements right before and right after its epochs).
Last, a short real search, and the share of its wall time that is not training steps or
validation (build, compile, tracing, checkpoints, bookkeeping).

    .venv/bin/python bench/throughput.py      # ~16 min on 2 CPU cores; results/bench_throughput.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
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
from machine import describe_shape, machine_row, measure_conv_peak  # noqa: E402

from search import SearchConfig, run_search  # noqa: E402
from search.hardware import apply_acceleration, choose_acceleration  # noqa: E402
from search.pipeline import make_dataset  # noqa: E402
from search.runfolder import RunFolder  # noqa: E402
from spaces import get_space, list_spaces  # noqa: E402
from spaces.base import DataSpec  # noqa: E402
from spaces.kernels import select_kernels  # noqa: E402

SEARCH_TEST_IMAGES = 1000  # the search never looks at them; the split only needs them set aside
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-train-jpeg.zip"


def forward_flops(model: keras.Model) -> float:
    """Multiply-adds x2 of the conv and dense layers (the rest is a few % at most)."""
    total = 0.0
    for layer in model.layers:  # the spaces build flat functional models
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, out_channels = layer.output.shape
            kh, kw, in_per_group, _ = layer.kernel.shape
            total += 2.0 * height * width * kh * kw * in_per_group * out_channels
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _, height, width, out_channels = layer.output.shape
            kh, kw = layer.kernel.shape[:2]
            total += 2.0 * height * width * kh * kw * out_channels
        elif isinstance(layer, keras.layers.Dense):
            total += 2.0 * float(np.prod(layer.kernel.shape))
    return total


def stem_input_gradient_flops(model: keras.Model) -> float:
    """The first convolution reads the image itself: no gradient flows to its input, so training
    skips that third of its cost (nothing before it is trainable in any space)."""
    stem = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    _, height, width, out_channels = stem.output.shape
    kh, kw, in_channels, _ = stem.kernel.shape
    return 2.0 * height * width * kh * kw * in_channels * out_channels


def interleaved_epoch_seconds(fits: dict, warmup: int, timed: int) -> dict[str, list[float]]:
    """Each path's seconds per epoch, epoch by epoch, alternating which path goes first: a shared
    VM's speed drifts by tens of percent over minutes, and alternating puts both under the same drift."""
    seconds: dict[str, list[float]] = {name: [] for name in fits}
    for epoch in range(warmup + timed):
        order = list(fits) if epoch % 2 == 0 else list(fits)[::-1]
        for name in order:
            started = time.perf_counter()
            fits[name](epoch)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def default_hp(epochs: int) -> kt.HyperParameters:
    hp = kt.HyperParameters()
    hp.values["tuner/epochs"] = epochs  # the schedule spans the epochs this run trains
    return hp


def bench_space(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    warmup: int,
    timed: int,
    steps_per_call: int | None = None,
    kernel_choice: str = "auto",
) -> dict:
    classes = int(y.max()) + 1
    spec = DataSpec(num_classes=classes, input_shape=x.shape[1:], train_size=len(x), batch_size=batch_size)
    epochs = warmup + timed
    acceleration = choose_acceleration(SearchConfig())
    space = get_space(name)

    # (a) plain: float32 arrays, augmentation layers in the model, stock layers, Keras's default jit;
    # in float32, and in HyperCNN's precision where that differs.
    plain_models = {}
    for precision in dict.fromkeys(["float32", acceleration.precision]):
        keras.utils.set_random_seed(0)
        plain_space = space(spec, jit_compile="auto", fit_verbose=0, plain_keras=True, precision=precision)
        plain_models[precision] = plain_space.build(default_hp(epochs))
    keras.mixed_precision.set_global_policy("float32")
    x_float, y_onehot = x.astype("float32"), keras.utils.to_categorical(y, classes)

    # (b) HyperCNN's path, exactly as a search trial runs it.
    apply_acceleration(acceleration)
    keras.utils.set_random_seed(0)
    kernels = select_kernels(acceleration.precision, "~/.cache/hypercnn", kernel_choice)
    hypermodel = space(
        spec,
        jit_compile=acceleration.jit_compile,
        fit_verbose=0,
        precision=acceleration.precision,
        kernels=kernels,
    )
    hp = default_hp(epochs)
    model = hypermodel.build(hp)
    if steps_per_call:  # an A/B of HyperCNN's choice; read when fit() first traces the step
        model.steps_per_execution = steps_per_call
    dataset = make_dataset(x, y, classes, batch_size, True, 0, kernels.data == "device")

    def plain_fit(plain_model):
        return lambda epoch: plain_model.fit(
            x_float, y_onehot, batch_size=batch_size, initial_epoch=epoch, epochs=epoch + 1, verbose=0
        )

    fits = {f"plain {precision}": plain_fit(plain_model) for precision, plain_model in plain_models.items()}
    fits["hypercnn"] = lambda epoch: hypermodel.fit(hp, model, dataset, initial_epoch=epoch, epochs=epoch + 1)

    def variant_fit(**changes: str):
        """HyperCNN's path with one kernel choice changed, its model built and stepped alike."""
        variant = space(
            spec,
            jit_compile=acceleration.jit_compile,
            fit_verbose=0,
            precision=acceleration.precision,
            kernels=dataclasses.replace(kernels, **changes),
        )
        keras.utils.set_random_seed(0)
        variant_model = variant.build(hp)
        variant_model.steps_per_execution = model.steps_per_execution
        on_device = changes.get("data", kernels.data) == "device"
        variant_data = make_dataset(x, y, classes, batch_size, True, 0, on_device)
        return lambda epoch: variant.fit(
            hp, variant_model, variant_data, initial_epoch=epoch, epochs=epoch + 1
        )

    if kernels.augmentation == "pipeline":
        # Where to augment, measured: the same path with the augmentation inside the training step
        # (keras.ops, as on JAX and GPUs) instead of in tf.data.
        fits["hypercnn in-step augmentation"] = variant_fit(augmentation="step")
    if kernels.data == "device":
        # Where the data lives, measured: the same path fed batches from the host by Keras's own loop.
        fits["hypercnn host batches"] = variant_fit(data="host")
    else:
        # And on TensorFlow without a GPU: the same path with the split on the device instead.
        fits["hypercnn device loop"] = variant_fit(augmentation="step", data="device")
    seconds = interleaved_epoch_seconds(fits, warmup, timed)
    rates = {name: len(x) * timed / sum(times[warmup:]) for name, times in seconds.items()}
    # The first epoch also compiles (XLA on JAX, tracing on TensorFlow): its excess over a steady one.
    steady_epoch_s = sum(seconds["hypercnn"][warmup:]) / timed
    compile_s = seconds["hypercnn"][0] - steady_epoch_s
    plain_float32, plain_same = rates["plain float32"], rates[f"plain {acceleration.precision}"]
    fast = rates["hypercnn"]
    in_step_rate = rates.get("hypercnn in-step augmentation")
    host_rate = rates.get("hypercnn host batches")
    device_rate = rates.get("hypercnn device loop")
    train_flops = 3 * forward_flops(model) - stem_input_gradient_flops(model)
    return {
        "space": name,
        "batch_size": batch_size,
        "params": model.count_params(),
        "train_mflop_per_image": round(train_flops / 1e6, 1),
        "plain_same_precision_images_per_s": round(plain_same, 1),
        "plain_float32_images_per_s": round(plain_float32, 1),
        "hypercnn_images_per_s": round(fast, 1),
        # Blank where the path already augments inside the step (any backend but TensorFlow).
        "hypercnn_in_step_augmentation_images_per_s": in_step_rate and round(in_step_rate, 1),
        # Blank where the path's data already comes from the host (TensorFlow): on JAX, Keras's own
        # loop fed host batches, against the device-resident loop of the hypercnn column.
        "hypercnn_host_batches_images_per_s": host_rate and round(host_rate, 1),
        # Blank where the path's data already lives on the device: the device loop (spaces.device_loop).
        "hypercnn_device_loop_images_per_s": device_rate and round(device_rate, 1),
        "compile_s": round(compile_s, 1),
        # The headline: HyperCNN against plain Keras in the same precision.
        "speedup_same_precision": round(fast / plain_same, 3),
        "speedup_vs_float32": round(fast / plain_float32, 3),
        "hypercnn_gflop_per_s": round(fast * train_flops / 1e9, 1),
        "precision": acceleration.precision,
        "kernels": f"batch_norm={kernels.batch_norm} optimizer={kernels.optimizer} "
        f"normalization={kernels.normalization} augmentation={kernels.augmentation} data={kernels.data}",
        "backend": keras.backend.backend(),
        "jit_compile": acceleration.jit_compile,
        "steps_per_call": model.steps_per_execution,
    }


def bench_search_overhead(data: str, work: Path, budget_s: float, train_size: int) -> dict:
    """A real Hyperband search; overhead = wall time not spent in steady training steps or validation."""
    config = SearchConfig.create(
        data=data,
        out=str(work / "search"),
        cache_dir=str(work / "cache") if data.endswith(".npz") else "~/.cache/hypercnn",
        train_size=train_size,
        val_size=train_size // 5,
        test_size=SEARCH_TEST_IMAGES,
        max_epochs=9,
        factor=3,
        time_budget_s=budget_s,
        overwrite=True,
        progress="off",
    )
    result = run_search(config)
    run = RunFolder(config.out)
    trial_ids = pd.read_csv(run.trials_csv, dtype={"trial_id": str})["trial_id"]
    trials = [run.read_trial_record(trial_id) for trial_id in trial_ids]
    useful = sum(t.get("train_seconds", 0) + t.get("validation_seconds", 0) for t in trials)
    setup = sum(t.get("setup_seconds", 0) for t in trials)
    trace = sum(t.get("trace_seconds", 0) for t in trials)
    wall = result.seconds
    return {
        "search_wall_s": round(wall, 1),
        "search_trials": result.trials,
        "search_epochs": sum(t.get("epochs_trained", 0) for t in trials),
        "useful_s": round(useful, 1),
        "setup_s (build+compile)": round(setup, 1),
        "trace_s (first steps)": round(trace, 1),
        "other_s (checkpoints, bookkeeping)": round(wall - useful - setup - trace, 1),
        "overhead_share": round(1 - useful / wall, 4),
    }


def synthetic_npz(path: Path, count: int) -> str:
    """Random images of CIFAR's shape: speed does not depend on what the pixels show."""
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8), y=np.arange(count) % 10)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", default=",".join(list_spaces()), help="comma-separated; default: all")
    parser.add_argument("--images", type=int, default=25_600, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=SearchConfig.batch_size)
    parser.add_argument(
        "--steps-per-call", type=int, default=None, help="override HyperCNN's steps per call (A/B)"
    )
    parser.add_argument(
        "--kernels", default="auto", help="HyperCNN's kernels: auto (timed per machine) | fused | stock (A/B)"
    )
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--timed-epochs", type=int, default=3)
    # The search-quality bench's search: 10,000 training and 2,000 validation images, 360 s.
    parser.add_argument("--search-budget", type=float, default=360.0, help="seconds; 0 skips the search")
    parser.add_argument("--search-train", type=int, default=10_000, help="training images in the search")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="for the search; generated if absent")
    parser.add_argument("--output", default=str(ROOT / "results" / "bench_throughput.csv"))
    args = parser.parse_args()

    # MFU is taken against the peak of the dtype the path computes in: float32, or bfloat16 /
    # float16 under mixed precision (their convolutions run at up to twice the float32 rate).
    precision = choose_acceleration(SearchConfig()).precision
    compute_dtype = keras.mixed_precision.Policy(precision).compute_dtype
    peaks, peak_shapes = {}, {}
    for dtype in dict.fromkeys(["float32", compute_dtype]):
        peaks[dtype], peak_shapes[dtype] = measure_conv_peak(dtype)
        shape = describe_shape(peak_shapes[dtype])
        print(f"measured conv peak: {peaks[dtype]:.1f} GFLOP/s ({dtype}, 3x3 conv {shape})", flush=True)

    before = peaks[compute_dtype]  # measured last, right before the first space
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    y = np.arange(args.images) % 10
    rows = []
    for name in args.spaces.split(","):
        print(
            f"=== {name}: plain model.fit vs HyperCNN path, {args.images} images, batch {args.batch_size}",
            flush=True,
        )
        row = bench_space(
            name,
            x,
            y,
            args.batch_size,
            args.warmup_epochs,
            args.timed_epochs,
            args.steps_per_call,
            args.kernels,
        )
        # The peak again right after this space's epochs; with the one right before them (the last
        # space's "after", or the start's), MFU compares the two under the same drift: the VM's
        # speed drifts by several percent between minutes.
        after, _ = measure_conv_peak(compute_dtype, shapes=[peak_shapes[compute_dtype]])
        peak = (before + after) / 2
        before = after
        row["peak_gflop_per_s"] = round(peak, 1)
        row["mfu_vs_measured_peak"] = round(row["hypercnn_gflop_per_s"] / peak, 3)
        print("   ", row, flush=True)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["peak_dtype"] = compute_dtype
    table["run_start_peak_gflop_per_s"] = round(peaks[compute_dtype], 1)
    table["float32_peak_gflop_per_s"] = round(peaks["float32"], 1)

    if args.search_budget > 0:
        with tempfile.TemporaryDirectory() as tmp:
            data = args.data
            if not Path(data).exists():
                data = synthetic_npz(Path(tmp) / "data.npz", args.search_train * 6 // 5 + SEARCH_TEST_IMAGES)
            print(
                f"=== search overhead: fast space, Hyperband 9/3, {args.search_budget:.0f} s on {data}",
                flush=True,
            )
            overhead = bench_search_overhead(data, Path(tmp), args.search_budget, args.search_train)
        print("   ", overhead, flush=True)
        for key, value in overhead.items():
            table[key] = value

    for column, value in machine_row(peaks["float32"], precision).items():
        table[column] = value
    target = Path(args.output)
    print(f"machine: {table['machine'].iloc[0]}; commit {table['commit'].iloc[0]}", flush=True)
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(table.drop(columns=["command", "machine"]).T.to_string(header=False))
    table.to_csv(target, index=False)
    print(f"written: {target}")


if __name__ == "__main__":
    main()
