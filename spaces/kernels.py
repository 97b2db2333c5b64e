"""Which kernels this machine trains with: stock Keras, or TensorFlow's fused and faster ones.

This is the seam between the backend-neutral spaces and TensorFlow's speed-ups: on any other Keras
backend (KERAS_BACKEND=jax) it picks stock Keras kernels and augmentation inside the training step
(spaces.augment_ops), so nothing imports TensorFlow; on TensorFlow it may pick spaces.layers' fused
batch norm and fast standardisation, spaces.optimizers' fused updates, and augmentation in the
tf.data pipeline (spaces.augment), the modules that use TensorFlow.

HyperCNN has three replacements for stock Keras computations (spaces.layers, spaces.optimizers):
fused batch norm, fused optimizer updates and a float32 multiply-add input standardisation. Each
computes what Keras computes (tests/spaces check it), but whether it is faster depends on the machine:
on 2 AVX512-BF16 cores in mixed bfloat16 fused batch norm measured 9 vs 25 ms (fwd+bwd,
128x32x32x32), while on other CPUs and in float32 the gap can vanish. So `select_kernels` times each
pair on this machine, in the precision it will train in, and keeps a replacement only where it is
faster beyond noise (KEEP_IF_FASTER). The result is cached per machine, TensorFlow version and
precision, and written to env.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

from search.errors import HyperCNNError

# A replacement must take at most this share of the stock kernel's time; the rest is noise between
# repeated timings of one op on a shared VM (several percent between minutes).
KEEP_IF_FASTER = 0.9
TIMING_REPEATS = 7
CACHE_VERSION = 1
# JAX trains from the split on the device (spaces.device_loop) rather than from Keras's loop fed host
# batches: on 2 AVX2 cores 1.3x the images/s for the fast defaults and the same for resnet's
# (results/bench_device_loop.csv); on a GPU the host loop starves (issue #13), not yet measured.
# TensorFlow does so where there is a GPU (placement_for_devices).
DEVICE_RESIDENT_ON_JAX = True
# This process's measurements by machine key: a search, its retrain and the tests measure once.
_MEASURED: dict[str, dict[str, list[float]]] = {}


@dataclasses.dataclass(frozen=True)
class Kernels:
    """The kernel each computation trains with: "fused"/"fast" (TensorFlow's) or "stock" (Keras's)."""

    batch_norm: str = "fused"
    optimizer: str = "fused"
    normalization: str = "fast"
    # Where training images are augmented: "pipeline" (uint8 batches in tf.data, on the host: the
    # TensorFlow path) or "step" (keras.ops inside the compiled training step: any backend).
    augmentation: str = "pipeline"
    # Where the training split lives: "host" (each step's batch copied from the host: tf.data or a
    # PyDataset) or "device" (the whole uint8 split on the device, each batch gathered inside a
    # compiled many-step loop: spaces.device_loop, JAX or TensorFlow; its augmentation is "step").
    data: str = "host"
    # Milliseconds per call measured by select_kernels: {"batch_norm": [replacement, stock], ...}.
    measured_ms: dict = dataclasses.field(default_factory=dict, compare=False)

    @classmethod
    def stock(cls, augmentation: str = "pipeline", data: str = "host") -> Kernels:
        return cls(
            batch_norm="stock", optimizer="stock", normalization="stock", augmentation=augmentation, data=data
        )

    @classmethod
    def for_backend(cls) -> Kernels:
        """Without a measurement: TensorFlow's kernels on TensorFlow, stock ones elsewhere."""
        import keras

        return cls() if keras.backend.backend() == "tensorflow" else cls.backend_neutral()

    @classmethod
    def backend_neutral(cls) -> Kernels:
        """Stock Keras throughout, augmentation inside the step: what every non-TensorFlow backend uses;
        on JAX the split on the device (DEVICE_RESIDENT_ON_JAX)."""
        import keras

        data = "device" if keras.backend.backend() == "jax" and DEVICE_RESIDENT_ON_JAX else "host"
        return cls.stock(augmentation="step", data=data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _best_of(step: Callable[[], object], repeats: int = TIMING_REPEATS) -> float:
    step()  # trace and warm up
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        step()
        times.append(time.perf_counter() - begin)
    return min(times)


def _paired_ms(replacement: Callable[[], object], stock: Callable[[], object]) -> list[float]:
    """Both timed in alternation, so that a machine whose speed drifts treats them alike."""
    fast, slow = [], []
    for _ in range(3):
        fast.append(_best_of(replacement))
        slow.append(_best_of(stock))
    return [round(1000 * min(fast), 3), round(1000 * min(slow), 3)]


def measure_kernels(precision: str) -> dict[str, list[float]]:
    """ms per call of [replacement, stock] for each computation, on shapes the spaces train on."""
    import keras
    import numpy as np
    import tensorflow as tf

    from spaces.layers import FastNormalization, FusedBatchNormalization
    from spaces.optimizers import FusedSGD

    compute_dtype = keras.mixed_precision.Policy(precision).compute_dtype
    rng = np.random.default_rng(0)
    activations = tf.constant(rng.normal(size=(128, 32, 32, 32)), compute_dtype)
    images = tf.constant(rng.integers(0, 256, (128, 32, 32, 3)), tf.uint8)

    def batch_norm_step(cls):
        layer = cls(momentum=0.9, dtype=precision)
        layer.build(activations.shape)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch(activations)
                loss = tf.reduce_sum(tf.cast(layer(activations, training=True), "float32"))
            return tape.gradient(loss, [activations, layer.gamma, layer.beta])

        return step

    def normalization_step(cls):
        layer = cls(mean=np.array([125.0, 123.0, 114.0]), variance=np.array([4e3, 4e3, 4e3]), dtype=precision)
        layer.build(images.shape)
        return tf.function(lambda: layer(images))

    def optimizer_step(cls):
        # The fast space's default: 3x3 convs of 32..128 channels (about 0.5 M weights in 12 tensors).
        shapes = [(3, 3, 3, 32), (3, 3, 32, 64), (3, 3, 64, 64), (3, 3, 64, 128), (3, 3, 128, 128)]
        shapes += [(3, 3, 128, 128), (64,), (128,), (128,), (128, 10), (10,), (32,)]
        variables = [keras.Variable(rng.normal(size=shape).astype("float32")) for shape in shapes]
        gradients = [tf.constant(rng.normal(size=shape), "float32") for shape in shapes]
        optimizer = cls(0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
        optimizer.build(variables)
        return tf.function(lambda: optimizer.apply(gradients, variables))

    return {
        "batch_norm": _paired_ms(
            batch_norm_step(FusedBatchNormalization), batch_norm_step(keras.layers.BatchNormalization)
        ),
        "normalization": _paired_ms(
            normalization_step(FastNormalization), normalization_step(keras.layers.Normalization)
        ),
        "optimizer": _paired_ms(optimizer_step(FusedSGD), optimizer_step(keras.optimizers.SGD)),
    }


def kernels_from_timings(measured: dict[str, list[float]]) -> Kernels:
    """Each replacement kept only where it took at most KEEP_IF_FASTER of the stock kernel's time."""

    def keep(name: str) -> bool:
        replacement, stock = measured[name]
        return replacement <= KEEP_IF_FASTER * stock

    return Kernels(
        batch_norm="fused" if keep("batch_norm") else "stock",
        optimizer="fused" if keep("optimizer") else "stock",
        normalization="fast" if keep("normalization") else "stock",
        measured_ms=measured,
    )


def _machine_key(precision: str) -> str:
    import tensorflow as tf

    from search.hardware import cpu_count, cpu_model

    facts = f"{CACHE_VERSION}|{cpu_model()}|{cpu_count()}|{platform.machine()}|{tf.__version__}|{precision}"
    return hashlib.sha256(facts.encode()).hexdigest()[:16]


def placement_for_devices(kernels: Kernels, gpus: int) -> Kernels:
    """With a GPU, TensorFlow trains from the split on the device too, augmenting inside the compiled
    step (spaces.device_loop): tf.data's host-side augmentation manages a few thousand images/s per
    core, where one GPU trains the fast space at over 100,000 (airbench: 155,000 on an A100)."""
    return dataclasses.replace(kernels, augmentation="step", data="device") if gpus else kernels


def select_kernels(
    precision: str, cache_dir: str | Path | None = None, choice: str = "auto", data_on: str = "auto"
) -> Kernels:
    """The one place that decides the kernels: "auto" measures this machine (once; cached),
    "stock" and "fused" force one side (for benchmarks and A/B runs). Off TensorFlow: stock.
    `data_on` "host" or "device" forces where the split lives (A/B runs); "auto" decides here."""
    import keras

    from search.hardware import detect_gpus

    if keras.backend.backend() != "tensorflow":
        if choice == "fused":
            raise HyperCNNError(
                f"--kernels fused needs the TensorFlow backend (KERAS_BACKEND is "
                f"{keras.backend.backend()}); use --kernels auto or stock"
            )
        kernels = Kernels.backend_neutral()
    else:
        kernels = placement_for_devices(_tensorflow_kernels(precision, cache_dir, choice), len(detect_gpus()))
    if data_on == "device":  # the device loop augments inside its step
        return dataclasses.replace(kernels, augmentation="step", data="device")
    if data_on == "host":
        return dataclasses.replace(kernels, data="host")
    return kernels


def _tensorflow_kernels(precision: str, cache_dir: str | Path | None, choice: str) -> Kernels:
    if choice == "stock":
        return Kernels.stock()
    if choice == "fused":
        return Kernels()
    key = _machine_key(precision)
    if key in _MEASURED:
        return kernels_from_timings(_MEASURED[key])
    cache = Path(cache_dir).expanduser() / f"kernels-{key}.json" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            _MEASURED[key] = json.loads(cache.read_text())["measured_ms"]
            return kernels_from_timings(_MEASURED[key])
        except (ValueError, KeyError, TypeError):
            cache.unlink(missing_ok=True)  # a damaged cache is only a cache: measure again
    _MEASURED[key] = measure_kernels(precision)
    kernels = kernels_from_timings(_MEASURED[key])
    if cache is not None:
        from search.runfolder import write_json  # write-then-rename: a kill never leaves half a file

        with contextlib.suppress(OSError):  # unwritable: measured again next time
            write_json(cache, kernels.to_dict())
    return kernels
