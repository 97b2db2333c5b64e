"""The whole job on JAX with TensorFlow unimportable, as on a GPU machine without it (make test's JAX
part): search, final training, report and the .keras export; and each backend's out-of-memory error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.backend_neutral


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="runs in make test's JAX part")
def test_hypercnn_run_on_jax_needs_no_tensorflow(tmp_path: Path, tiny_npz: Path, capsys) -> None:
    from search.cli import main

    run = tmp_path / "run"
    flags = ["--data", str(tiny_npz), "--out", str(run), "--cache-dir", str(tmp_path / "cache")]
    flags += ["--space", "fast", "--max-epochs", "1", "--factor", "2"]
    flags += ["--val-size", "40", "--test-size", "40"]
    assert main(["run", *flags, "--time-budget", "80s", "--progress", "off"]) == 0
    out = capsys.readouterr().out
    assert "Keras backend jax" in out and "exporting the model: best.keras\n" in out
    assert "tensorflow" not in sys.modules
    # The split lived on the device, each step gathered from it (spaces.device_loop).
    env = json.loads((run / "env.json").read_text())
    assert env["hardware"]["kernels"]["data"] == "device", env["hardware"]["kernels"]
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["test_images"] == 40 and 0.0 <= metrics["test_accuracy"] <= 1.0
    described = json.loads((run / "model" / "model.json").read_text())
    # Only best.keras: the other formats are converted from TensorFlow graphs.
    assert "backend is jax" in described["formats"]["saved_model"]["skipped"]
    assert (run / "report" / "index.html").is_file()
    model = keras.models.load_model(run / "model" / "best.keras")
    images = np.zeros((2, 32, 32, 3), np.uint8)
    assert model.predict(images, verbose=0).shape == (2, 4)


def test_the_backends_own_out_of_memory_error_is_a_failed_trial_reason() -> None:
    """A GPU out of memory raises the backend's own error: each is a failed trial with one line."""
    from search.tuner import out_of_memory, out_of_memory_reason

    if keras.backend.backend() == "jax":
        import jax

        message = "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 4294967296 bytes."
        error: BaseException = jax.errors.JaxRuntimeError(message)
    else:
        import tensorflow as tf

        error = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor on GPU:0")
    assert out_of_memory(error) and not out_of_memory(RuntimeError("shapes do not match"))
    reason = out_of_memory_reason(error, batch_size=512)
    assert reason.startswith("out of memory: ") and "batch size 512" in reason and "\n" not in reason
