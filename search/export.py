"""export_model: best.keras (uint8 in, probabilities out) plus model.json, checked by reloading."""

from __future__ import annotations

import datetime
from typing import Any

import keras
import numpy as np

from search.checksums import file_digest
from search.errors import HyperCNNError
from search.runfolder import RunFolder, package_versions, write_json


def export_model(
    model: keras.Model,
    run: RunFolder,
    check_images: np.ndarray,
    expected_probabilities: np.ndarray,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Save, reload, and refuse to ship a file that does not predict what the trained model did.

    `model` is spaces.inference.inference_model's: stock Keras layers, so the file loads with plain
    keras.models.load_model, no HyperCNN needed."""
    run.model_dir.mkdir(parents=True, exist_ok=True)
    partial = run.model_file.with_name("best.partial.keras")
    model.save(partial)
    reloaded = keras.models.load_model(partial)
    probabilities = reloaded.predict(check_images, batch_size=256, verbose=0)
    same_classes = bool(np.array_equal(probabilities.argmax(1), expected_probabilities.argmax(1)))
    max_diff = float(np.abs(probabilities - expected_probabilities).max())
    if not same_classes or max_diff > 1e-5:
        raise HyperCNNError(
            f"the saved model predicts differently after reloading (max difference {max_diff:.2g}); "
            "this is a bug: please report it with the run folder"
        )
    partial.replace(run.model_file)
    description = {
        **metadata,
        "file": run.model_file.name,
        "sha256": file_digest(run.model_file),
        "input": {"dtype": "uint8", "shape": [int(d) for d in model.input_shape[1:]], "range": "0..255 RGB"},
        "output": "class probabilities, in the order of 'classes'",
        "reload_check": {"images": len(check_images), "same_classes": same_classes, "max_abs_diff": max_diff},
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "packages": package_versions(),
    }
    write_json(run.model_json, description)
    return description
