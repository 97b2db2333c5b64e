"""What the machine offers, and the training settings that follow (mixed precision, XLA)."""

from __future__ import annotations

import dataclasses
import functools
import os
import platform

import keras
import tensorflow as tf

from search.config import SearchConfig


@dataclasses.dataclass(frozen=True)
class Acceleration:
    gpus: list[str]
    precision: str
    jit_compile: bool


@functools.cache  # a machine fact: asked by the search, the report and every retrain
def detect_gpus() -> list[str]:
    names = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        names.append(details.get("device_name", device.name))
    return names


@functools.cache
def cpu_has_bfloat16() -> bool:
    """Native bfloat16 dot products (AVX512-BF16 or AMX): oneDNN then runs bf16 convolutions at
    about twice the float32 rate. Without them it emulates bf16, slower than float32."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_acceleration(config: SearchConfig) -> Acceleration:
    """auto: mixed float16 and XLA on a GPU (tensor cores); on a CPU, mixed bfloat16 where it has
    native bf16 (2x the float32 images/s for the fast space on 2 AVX512-BF16 cores, see
    bench/throughput.py), else float32; no XLA on a CPU (it measured no faster)."""
    gpus = list(detect_gpus())
    precision = config.precision
    if precision == "auto":
        precision = "mixed_float16" if gpus else ("mixed_bfloat16" if cpu_has_bfloat16() else "float32")
    jit_compile = {"on": True, "off": False}.get(config.jit_compile, bool(gpus))
    return Acceleration(gpus, precision, jit_compile)


def training_device_line(acceleration: Acceleration) -> str:
    """One line naming where and how this process trains: device, Keras backend, precision, XLA."""
    if acceleration.gpus:
        device = f"GPU ({', '.join(acceleration.gpus)})"
    else:
        device = f"the CPU ({cpu_model()}, {cpu_count()} cores)"
    xla = ", XLA-compiled" if acceleration.jit_compile else ""
    return f"training on {device}, Keras backend {keras.backend.backend()}, {acceleration.precision}{xla}"


def apply_acceleration(acceleration: Acceleration) -> None:
    keras.mixed_precision.set_global_policy(acceleration.precision)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
