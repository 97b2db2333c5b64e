"""What the machine offers, and the training settings that follow (mixed precision, XLA)."""

from __future__ import annotations

import dataclasses
import functools
import os
import platform

import keras

from search.config import SearchConfig

# NVIDIA compute capability from which bfloat16 runs on tensor cores at float16's rate (Ampere on):
# no loss scaling needed, and no LossScaleOptimizer around the optimizer.
BFLOAT16_COMPUTE_CAPABILITY = (8, 0)


@dataclasses.dataclass(frozen=True)
class Acceleration:
    gpus: list[str]
    precision: str
    jit_compile: bool


@functools.cache  # a machine fact: asked by the search, the report and every retrain
def gpu_devices() -> list[tuple[str, tuple[int, int] | None]]:
    """(name, compute capability) of each GPU the Keras backend trains on."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        found = []
        for device in jax.devices():
            if device.platform == "gpu":
                capability = getattr(device, "compute_capability", None)
                parsed = tuple(int(part) for part in str(capability).split(".")[:2]) if capability else None
                found.append((device.device_kind, parsed))
        return found
    if backend != "tensorflow":
        return []
    import tensorflow as tf

    found = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        found.append((details.get("device_name", device.name), details.get("compute_capability")))
    return found


def detect_gpus() -> list[str]:
    return [name for name, _ in gpu_devices()]


def gpus_run_bfloat16() -> bool:
    capabilities = [capability for _, capability in gpu_devices()]
    fast = [
        capability is not None and tuple(capability) >= BFLOAT16_COMPUTE_CAPABILITY
        for capability in capabilities
    ]
    return bool(fast) and all(fast)


# oneDNN's instruction sets (the names ONEDNN_MAX_CPU_ISA takes) below AVX512_CORE: capped at one of
# them, oneDNN runs float32 with 256-bit vectors.
ONEDNN_ISAS_WITHOUT_AVX512 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2"})
# ... and those below AVX512_CORE_BF16. Capped at one of them, a bfloat16 convolution on 2 AVX512-BF16
# cores measured 84 GFLOP/s (AVX512_CORE, AVX512_CORE_VNNI: emulated, a third of float32's 240) or
# failed outright (AVX2, AVX2_VNNI_2: "could not create a primitive descriptor"); bench/machine.py's
# conv peak, 2026-12-06.
ONEDNN_ISAS_WITHOUT_BFLOAT16 = ONEDNN_ISAS_WITHOUT_AVX512 | {"AVX512_CORE", "AVX512_CORE_VNNI"}


@functools.cache  # a machine fact; what may change within a process (the environment) is read apart
def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return []


def onednn_cap() -> str:
    """The instruction-set cap set for oneDNN (ONEDNN_MAX_CPU_ISA, upper case; '' where none)."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()


def onednn_switched_off() -> bool:
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower() in ("0", "false")


def onednn_limit() -> str | None:
    """Why TensorFlow's oneDNN cannot run bfloat16 natively on this CPU whatever its flags (None: it
    can): a cap on its instruction sets, or oneDNN switched off (then Eigen runs bf16 no faster than
    float32: 213 against 211 GFLOP/s on the same cores)."""
    cap = onednn_cap()
    if cap in ONEDNN_ISAS_WITHOUT_BFLOAT16:
        return f"ONEDNN_MAX_CPU_ISA={cap}"
    if onednn_switched_off():
        return "TF_ENABLE_ONEDNN_OPTS=0"
    return None


def cpu_has_bfloat16() -> bool:
    """Native bfloat16 dot products (AVX512-BF16 or AMX) that oneDNN may use: it then runs bf16
    convolutions at about twice the float32 rate. Without them it emulates bf16, slower than float32,
    or (capped at AVX2) cannot run it at all."""
    flags = cpu_flags()
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and onednn_limit() is None


def cpu_float32_vectors() -> str:
    """'avx512' where oneDNN runs float32 convolutions with AVX-512 on this CPU; 'avx2' where it runs
    256-bit vectors (a cap below AVX512_CORE, oneDNN switched off, or a CPU with AVX2 but no AVX-512F);
    'other' on any other CPU (no cost was measured there)."""
    flags = cpu_flags()
    if "avx512f" in flags and onednn_cap() not in ONEDNN_ISAS_WITHOUT_AVX512 and not onednn_switched_off():
        return "avx512"
    return "avx2" if "avx2" in flags else "other"


def cost_key(precision: str, on_gpu: bool) -> str:
    """What a configuration's cost per epoch over the default's depends on, as the budget picks'
    measured costs are keyed (search.plan.BudgetPick): the precision and, in float32 on a CPU, the
    vector width oneDNN runs it at. Width 24 took 0.56 to 0.59 of the default's epoch in float32
    with oneDNN capped at AVX2 and 0.72 to 0.80 with AVX-512 float32 kernels, on the same 2 cores
    (results/bench_portfolio_avx2cap_18*.csv, bench_portfolio_avx512core_18*.csv)."""
    if precision == "float32" and not on_gpu:
        return f"float32/{cpu_float32_vectors()}"
    return precision


def choose_acceleration(config: SearchConfig) -> Acceleration:
    """auto: XLA on a GPU, in mixed bfloat16 where its tensor cores run it (compute capability 8.0
    and later: no loss scaling), else mixed float16; on a CPU, mixed bfloat16 where it has native
    bf16 (2x the float32 images/s for the fast space on 2 AVX512-BF16 cores, see
    bench/throughput.py), else float32; no XLA on a CPU (it measured no faster)."""
    gpus = list(detect_gpus())
    precision = config.precision
    if precision == "auto" and gpus:
        precision = "mixed_bfloat16" if gpus_run_bfloat16() else "mixed_float16"
    elif precision == "auto":
        precision = "mixed_bfloat16" if cpu_has_bfloat16() else "float32"
    jit_compile = {"on": True, "off": False}.get(config.jit_compile, bool(gpus))
    return Acceleration(gpus, precision, jit_compile)


def training_device_line(acceleration: Acceleration) -> str:
    """One line naming where and how this process trains: device, Keras backend, precision, XLA."""
    if acceleration.gpus:
        device = f"GPU ({', '.join(acceleration.gpus)})"
    else:
        limit = onednn_limit()
        device = f"the CPU ({cpu_model()}, {cpu_count()} cores{f', {limit}' if limit else ''})"
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


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where the OS cannot say)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def cpu_count() -> int:
    return len(allowed_cpus())
