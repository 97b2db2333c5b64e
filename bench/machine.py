"""What every benchmark row carries: the commit, the machine (CPU, cores, measured conv peak), the
date and the precision, and the one rule for merging rows from several invocations.

A figure is only comparable with another measured on the same commit and the same machine: these
VMs' float32 conv peak has measured 135 to 535 GFLOP/s from one session to the next.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PEAK_SHAPES = ((64, 32, 128), (32, 32, 256), (16, 16, 512))  # (batch, size, channels)
# Two measurements of the same machine's peak, minutes apart, differ by several percent (VM drift);
# more than this and it is another machine (or another load on it).
SAME_PEAK_TOLERANCE = 0.15
MACHINE_COLUMNS = ["commit", "machine", "cpu", "cores", "float32_peak_gflop_per_s", "date", "precision"]


# A GPU needs far larger convolutions to reach its peak than a 2-core CPU does.
GPU_PEAK_SHAPES = ((256, 32, 256), (256, 16, 512), (128, 64, 256))


def compiled_conv(dtype: str, batch: int, size: int, channels: int):
    """(a call that runs one 3x3 'SAME' convolution to completion, its inputs), on the Keras backend:
    tf.function on TensorFlow, jax.jit on JAX (so the JAX path needs no TensorFlow)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax
        import jax.numpy as jnp

        images = jax.random.normal(jax.random.key(0), (batch, size, size, channels)).astype(dtype)
        kernel = jax.random.normal(jax.random.key(1), (3, 3, channels, channels)).astype(dtype)
        numbers = ("NHWC", "HWIO", "NHWC")

        @jax.jit
        def conv(x, k):
            out = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=numbers)
            return jnp.sum(out.astype("float32"))

        return lambda: conv(images, kernel).block_until_ready()
    import tensorflow as tf

    images = tf.cast(tf.random.normal([batch, size, size, channels]), dtype)
    kernel = tf.cast(tf.random.normal([3, 3, channels, channels]), dtype)
    conv = tf.function(lambda x, k: tf.reduce_sum(tf.cast(tf.nn.conv2d(x, k, 1, "SAME"), "float32")))
    return lambda: conv(images, kernel).numpy()


def measure_conv_peak(
    dtype: str = "float32", seconds_per_shape: float = 4.0, shapes=None
) -> tuple[float, tuple[int, int, int]]:
    """GFLOP/s of the fastest of a few large 3x3 convolutions in `dtype`, and its shape."""
    from search.hardware import detect_gpus

    shapes = shapes or (GPU_PEAK_SHAPES if detect_gpus() else PEAK_SHAPES)
    best, best_shape = 0.0, shapes[0]
    for batch, size, channels in shapes:
        run = compiled_conv(dtype, batch, size, channels)
        run()  # trace and warm up
        flops = 2.0 * batch * size * size * 9 * channels * channels
        runs, started = [], time.perf_counter()
        while time.perf_counter() - started < seconds_per_shape or len(runs) < 3:
            begin = time.perf_counter()
            run()
            runs.append(time.perf_counter() - begin)
        rate = flops / min(runs) / 1e9
        if rate > best:
            best, best_shape = rate, (batch, size, channels)
    return best, best_shape


def describe_shape(shape: tuple[int, int, int]) -> str:
    batch, size, channels = shape
    return f"{batch}x{size}x{size}x{channels} -> {channels}"


def git_commit() -> str:
    """HEAD's short hash, with "-dirty" when tracked files differ from it (then no commit ran it).
    results/ does not count: a bench's own CSV, written by one invocation, made the next one of the
    same commit "dirty", and merge_rows then dropped the first one's rows."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (
        "-dirty" if git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results") else ""
    )


def machine_row(float32_peak: float, precision: str) -> dict:
    """The columns every benchmark row carries: commit, machine, date, precision and this command."""
    from search.hardware import cpu_count, cpu_model, detect_gpus, onednn_limit

    cpu, cores = cpu_model(), cpu_count()
    limit = onednn_limit()
    if limit:  # e.g. AVX-512 switched off in oneDNN: another machine for every comparison
        cpu += f" ({limit})"
    gpus = detect_gpus()
    machine = f"{cpu}, {cores} core{'' if cores == 1 else 's'}, float32 conv peak {float32_peak:.0f} GFLOP/s"
    if gpus:
        machine += f", GPU {', '.join(gpus)}"
    return {
        "commit": git_commit(),
        "machine": machine,
        "cpu": cpu,
        "cores": cores,
        "float32_peak_gflop_per_s": round(float32_peak, 1),
        "date": datetime.date.today().isoformat(),
        "precision": precision,
        # With what limits the run in front (oneDNN's kernels, then the cores it may use), so that
        # the command repeats it in a shell.
        "command": " ".join(
            [*([limit] if limit else []), *cpu_pinning(), Path(sys.executable).name, *sys.argv]
        ),
    }


def cpu_pinning() -> list[str]:
    """`taskset -c CPUS` when this process may use fewer CPUs than the machine has (the emulated
    slow machine runs on one core of two), else nothing."""
    from search.hardware import allowed_cpus

    allowed = allowed_cpus()
    if len(allowed) >= (os.cpu_count() or 0):
        return []
    return ["taskset", "-c", ",".join(str(cpu) for cpu in allowed)]


def same_machine_and_commit(a: pd.Series, b: pd.Series) -> bool:
    if a["commit"] != b["commit"] or a["cpu"] != b["cpu"] or int(a["cores"]) != int(b["cores"]):
        return False
    peak_a, peak_b = float(a["float32_peak_gflop_per_s"]), float(b["float32_peak_gflop_per_s"])
    return abs(peak_a - peak_b) <= SAME_PEAK_TOLERANCE * max(peak_a, peak_b)


def read_rows(path: Path) -> pd.DataFrame:
    """A results CSV with its commit column as text: a commit such as 072e925 otherwise reads as a
    number (72e925: infinity) and matches no commit (the 2,700 s slow-machine bench lost one side's
    rows to it)."""
    return pd.read_csv(path, dtype={"commit": str})


def merge_rows(target: Path, table: pd.DataFrame, key: str) -> pd.DataFrame:
    """The new rows, plus earlier rows of `target` for other `key`s only when they ran on the same
    commit and machine; rows from another commit or machine are dropped, not mixed in (git history
    and CHANGELOG.md keep them)."""
    if not target.is_file() or table.empty:
        return table
    earlier = read_rows(target)
    if not set(MACHINE_COLUMNS) <= set(earlier.columns):
        print(f"{target}: earlier rows have no commit/machine columns; replacing them", flush=True)
        return table
    if key not in earlier.columns:
        # Rows of an older layout (the 300 s search-quality run at e5f14a2 lost its table to this).
        print(f"{target}: earlier rows have no {key!r} column (an older layout); replacing them", flush=True)
        return table
    reference = table.iloc[0]
    kept = earlier[
        ~earlier[key].isin(table[key])
        & earlier.apply(lambda row: same_machine_and_commit(row, reference), axis=1)
    ]
    dropped = len(earlier) - len(kept) - int(earlier[key].isin(table[key]).sum())
    if dropped:
        print(f"{target}: {dropped} earlier row(s) from another commit or machine dropped", flush=True)
    return pd.concat([kept, table], ignore_index=True)
