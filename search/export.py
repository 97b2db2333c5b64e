"""export_model: best.keras plus a SavedModel, TFLite (float and dynamic-range quantised) and ONNX,
each checked against the Keras model on the test images, described in model.json.

All of them take uint8 RGB images and return class probabilities; none needs HyperCNN."""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from search import formats
from search.checksums import file_digest
from search.errors import HyperCNNError
from search.runfolder import RunFolder, package_versions, write_json

# Top-1 agreement a float export must reach with the Keras model on the test images.
FLOAT_AGREEMENT = 0.999
ONNX_OPSET = 17


def export_model(
    model: keras.Model,
    run: RunFolder,
    check_images: np.ndarray,
    expected_probabilities: np.ndarray,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Save best.keras, reload it, and refuse to ship a file that does not predict what the trained
    model did; then the other formats, each checked the same way.

    `model` is spaces.inference.inference_model's: stock Keras layers, so the file loads with plain
    keras.models.load_model, no HyperCNN needed."""
    run.model_dir.mkdir(parents=True, exist_ok=True)
    partial = run.model_file.with_name("best.partial.keras")
    model.save(partial)
    predict, _ = formats.keras_runner(partial)
    check = agreement(predict(check_images), expected_probabilities)
    if check["top1_agreement"] < 1.0 or check["max_abs_diff"] > 1e-5:
        raise HyperCNNError(
            f"the saved model predicts differently after reloading (max difference "
            f"{check['max_abs_diff']:.2g}); this is a bug: please report it with the run folder"
        )
    partial.replace(run.model_file)
    exported = {formats.KERAS: _described(run.model_file, check, 0.0)}
    exported.update(export_other_formats(model, run.model_dir, check_images, expected_probabilities))
    description = {
        **metadata,
        "file": run.model_file.name,
        "sha256": exported[formats.KERAS]["sha256"],
        "input": {"dtype": "uint8", "shape": [int(d) for d in model.input_shape[1:]], "range": "0..255 RGB"},
        "output": "class probabilities, in the order of 'classes'",
        "reload_check": {
            "images": len(check_images),
            "same_classes": check["top1_agreement"] == 1.0,
            "max_abs_diff": check["max_abs_diff"],
        },
        "formats": exported,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "packages": package_versions(),
    }
    write_json(run.model_json, description)
    return description


def agreement(probabilities: np.ndarray, expected: np.ndarray) -> dict[str, Any]:
    return {
        "images": int(len(expected)),
        "top1_agreement": float(np.mean(probabilities.argmax(1) == expected.argmax(1)))
        if len(expected)
        else 1.0,
        "max_abs_diff": float(np.abs(probabilities - expected).max()) if len(expected) else 0.0,
    }


def tree_size_and_digest(path: Path) -> tuple[int, str]:
    """A file's size and sha256; for a folder, the total size and a sha256 over its files' names and
    digests in sorted order."""
    if path.is_file():
        return path.stat().st_size, file_digest(path)
    digest = hashlib.sha256()
    size = 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        size += file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_digest(file)}\n".encode())
    return size, digest.hexdigest()


def _described(path: Path, check: dict[str, Any], seconds: float) -> dict[str, Any]:
    size, digest = tree_size_and_digest(path)
    return {"file": path.name, "bytes": size, "sha256": digest, "seconds": round(seconds, 1), **check}


def export_other_formats(
    model: keras.Model, folder: Path, check_images: np.ndarray, expected: np.ndarray
) -> dict[str, Any]:
    """SavedModel, then TFLite and ONNX from it; a format this backend or install cannot produce is
    skipped with one line saying why (recorded in model.json too)."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        reason = f"SavedModel, TFLite and ONNX are exported from TensorFlow graphs; the backend is {backend}"
        print(f"export: skipped {', '.join(formats.FLOAT_FORMATS)}: {reason}", flush=True)
        return {kind: {"skipped": reason} for kind in (*formats.FLOAT_FORMATS, formats.TFLITE_DYNAMIC_RANGE)}
    exported: dict[str, Any] = {}
    saved_model = folder / formats.FILE_NAMES[formats.SAVED_MODEL]
    started = time.time()
    partial = saved_model.with_name(saved_model.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.export(str(partial), format="tf_saved_model", verbose=False)
    shutil.rmtree(saved_model, ignore_errors=True)
    partial.replace(saved_model)
    exported[formats.SAVED_MODEL] = _checked(
        saved_model, formats.SAVED_MODEL, check_images, expected, started
    )
    for kind, quantised in ((formats.TFLITE, False), (formats.TFLITE_DYNAMIC_RANGE, True)):
        started = time.time()
        target = folder / formats.FILE_NAMES[kind]
        _write_whole(target, tflite_bytes(saved_model, quantised))
        exported[kind] = _checked(target, kind, check_images, expected, started)
    target = folder / formats.FILE_NAMES[formats.ONNX]
    if importlib.util.find_spec("tf2onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        reason = "tf2onnx and onnxruntime are not installed (pip install 'hypercnn[onnx]')"
        print(f"export: skipped ONNX: {reason}", flush=True)
        exported[formats.ONNX] = {"skipped": reason}
    else:
        started = time.time()
        try:
            onnx_from_saved_model(saved_model, target)
            exported[formats.ONNX] = _checked(target, formats.ONNX, check_images, expected, started)
        except HyperCNNError as exc:  # the other formats still ship
            target.unlink(missing_ok=True)  # a model.onnx that failed its check must not look shipped
            print(f"export: skipped ONNX: {exc}", flush=True)
            exported[formats.ONNX] = {"skipped": str(exc)}
    for kind, described in exported.items():
        if kind in formats.FLOAT_FORMATS and described.get("top1_agreement", 1.0) < FLOAT_AGREEMENT:
            raise HyperCNNError(
                f"the {kind} export agrees with the Keras model on only "
                f"{100 * described['top1_agreement']:.2f}% of the test images; this is a bug: please "
                "report it with the run folder"
            )
    return exported


def _checked(path: Path, kind: str, images: np.ndarray, expected: np.ndarray, started: float) -> dict:
    predict, _ = formats.load_runner(path, kind)
    return _described(path, agreement(predict(images), expected), time.time() - started)


def _write_whole(path: Path, content: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content)
    partial.replace(path)


def tflite_bytes(saved_model: Path, dynamic_range: bool) -> bytes:
    """TensorFlow Lite with built-in ops only: a model needing TensorFlow (select) ops fails here
    instead of shipping a file that a plain TFLite runtime cannot run."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if dynamic_range:
        # Weights stored as int8, activations float: about 4x smaller, no calibration data needed.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def onnx_from_saved_model(saved_model: Path, target: Path) -> None:
    """tf2onnx's own command line on the SavedModel: it freezes the graph, so the normalisation
    constants are part of the model (Keras's onnx export left them as extra inputs)."""
    partial = target.with_name(target.name + ".partial")
    command = [
        sys.executable,
        "-m",
        "tf2onnx.convert",
        "--saved-model",
        str(saved_model),
        "--signature_def",
        "serving_default",
        "--opset",
        str(ONNX_OPSET),
        "--output",
        str(partial),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=_quiet_env())
    if done.returncode != 0 or not partial.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise HyperCNNError(f"tf2onnx failed: {last[:160]}")
    erfc_as_one_minus_erf(partial)
    partial.replace(target)


def erfc_as_one_minus_erf(path: Path) -> None:
    """Keras's exact GELU on TensorFlow is tf.nn.gelu, which computes erfc; ONNX has no Erfc op and
    tf2onnx 1.17 passes it through unconverted, so onnxruntime refused the whole model (INVALID_GRAPH:
    "No Op registered for Erfc") and `make run` shipped no ONNX for a GELU winner. erfc(x) = 1 - erf(x),
    and ONNX has Erf."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    if not any(node.op_type == "Erfc" for node in model.graph.node):
        return
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in onnx.shape_inference.infer_shapes(model).graph.value_info
    }
    ones: dict[int, str] = {}  # one constant per element type
    nodes = []
    for node in model.graph.node:
        if node.op_type != "Erfc":
            nodes.append(node)
            continue
        elem_type = types.get(node.input[0], onnx.TensorProto.FLOAT)
        if elem_type not in ones:
            ones[elem_type] = f"hypercnn_one_{elem_type}"
            value = np.ones((), helper.tensor_dtype_to_np_dtype(elem_type))
            model.graph.initializer.append(numpy_helper.from_array(value, ones[elem_type]))
        erf = f"{node.output[0]}_erf"
        nodes.append(helper.make_node("Erf", [node.input[0]], [erf], name=f"{node.name}_erf"))
        nodes.append(helper.make_node("Sub", [ones[elem_type], erf], list(node.output), name=node.name))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _quiet_env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
