"""TensorFlow imported without its start-up chatter; what matters in it becomes one HyperCNN line.

TensorFlow and absl write to file descriptor 2 before any Python logging exists ("All log messages
before absl::InitializeLog()", cuda stubs, CPU-feature notes, "failed call to cuInit" on a machine
with no GPU at all). A user reads those as failures. The first import of TensorFlow in a process
goes through `load_keras_backend`, which holds file descriptor 2 in a temporary file meanwhile and
shows the captured text only when asked (`hypercnn --verbose`, or HYPERCNN_VERBOSE=1).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

VERBOSE_ENV_VAR = "HYPERCNN_VERBOSE"
# The first NVIDIA GPU's device node, and the driver's list of GPUs.
NVIDIA_DEVICE_NODE = Path("/dev/nvidia0")
NVIDIA_DRIVER_GPUS = Path("/proc/driver/nvidia/gpus")


def verbose_requested() -> bool:
    return os.environ.get(VERBOSE_ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def set_verbose(verbose: bool) -> None:
    """The CLI's --verbose: TensorFlow's own log lines are shown, in this process and its children."""
    if verbose:
        os.environ[VERBOSE_ENV_VAR] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"


@contextlib.contextmanager
def _captured_fd2():
    """Everything written to file descriptor 2 (C++ and Python alike) meanwhile, as a list of one str."""
    captured: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


def gpu_hardware_present() -> bool:
    """An NVIDIA GPU visible to the operating system, whether or not TensorFlow can use it."""
    listed = NVIDIA_DRIVER_GPUS.is_dir() and any(NVIDIA_DRIVER_GPUS.iterdir())
    return NVIDIA_DEVICE_NODE.exists() or listed


def gpus_hidden_on_purpose() -> bool:
    """CUDA_VISIBLE_DEVICES set to nothing (or -1): the user, or a search's chief (which trains
    nothing), hid every GPU from this process."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    return hidden is not None and hidden.strip() in ("", "-1")


def load_keras_backend(verbose: bool | None = None) -> str:
    """`import keras` and its backend (TensorFlow by default, JAX with KERAS_BACKEND=jax), quietly
    unless verbose; warns in one line when a GPU is present but the backend cannot use it. Returns
    the backend's name."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    verbose = verbose_requested() if verbose is None else verbose
    if not verbose:
        # 3 hides TensorFlow's C++ INFO, WARNING and ERROR lines after absl is set up as well.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _captured_fd2() as captured:
        import keras

        from search.hardware import detect_gpus

        backend = keras.backend.backend()
        gpus = len(detect_gpus())  # the cuInit chatter is printed here; cached for the search
    if verbose and captured[0]:
        sys.stderr.write(captured[0])
    if not verbose and backend == "tensorflow":
        # TensorFlow's Python-side warnings (retracing notes and the like) go through its logger.
        sys.modules["tensorflow"].get_logger().setLevel("ERROR")
    warning = unusable_gpu_warning(gpus, captured[0], backend)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    return backend


# The extra that brings each backend's CUDA build.
GPU_EXTRAS = {"tensorflow": "gpu", "jax": "jax-cuda"}


def unusable_gpu_warning(usable_gpus: int, backend_output: str, backend: str = "tensorflow") -> str | None:
    """One line when the machine has an NVIDIA GPU that the Keras backend found no way to use (a
    CPU-only build, or CUDA libraries missing), unless the GPUs were hidden on purpose."""
    if usable_gpus or not gpu_hardware_present() or gpus_hidden_on_purpose():
        return None
    name = {"tensorflow": "TensorFlow", "jax": "JAX"}.get(backend, backend)
    hint = next((line.strip() for line in backend_output.splitlines() if "cuda" in line.lower()), "")
    hint = f" ({name} said: {hint})" if hint else ""
    extra = GPU_EXTRAS.get(backend, "gpu")
    return (
        f"warning: this machine has an NVIDIA GPU but {name} cannot use it, so training runs on "
        f"the CPU; install HyperCNN with {name}'s CUDA build: pip install 'hypercnn[{extra}]'{hint}"
    )


@contextlib.contextmanager
def native_chatter_held():
    """Hold what native code writes to standard error meanwhile (TFLite's "Created TensorFlow Lite
    XNNPACK delegate" INFO line), shown only when verbose."""
    with _captured_fd2() as captured:
        yield
    if verbose_requested() and captured and captured[0]:
        sys.stderr.write(captured[0])
