"""Exported model formats: which file is which, and how each one classifies a batch of uint8 images.

Every format takes uint8 RGB images (N, height, width, 3) and returns class probabilities; none
needs HyperCNN to run. The export's agreement check and `hypercnn predict` both use these runners,
so what the check measured is what predict runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from search import quiet
from search.errors import HyperCNNError

KERAS = "keras"
SAVED_MODEL = "saved_model"
TFLITE = "tflite"
TFLITE_DYNAMIC_RANGE = "tflite_dynamic_range"
ONNX = "onnx"

# Names inside model/: the run-folder contract for exported files.
FILE_NAMES = {
    KERAS: "best.keras",
    SAVED_MODEL: "saved_model",
    TFLITE: "model.tflite",
    TFLITE_DYNAMIC_RANGE: "model_dynamic_range.tflite",
    ONNX: "model.onnx",
}
# Quantised weights change the numbers a little by design; float formats must match the Keras model.
FLOAT_FORMATS = (SAVED_MODEL, TFLITE, ONNX)

Runner = Callable[[np.ndarray], np.ndarray]


def format_of(path: Path) -> str:
    """The format of an exported file or folder, from its name; one line when it is none of them."""
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return SAVED_MODEL
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return KERAS
    if suffix == ".tflite":
        return TFLITE_DYNAMIC_RANGE if path.name == FILE_NAMES[TFLITE_DYNAMIC_RANGE] else TFLITE
    if suffix == ".onnx":
        return ONNX
    raise HyperCNNError(
        f"{path} is not an exported model; give a .keras, .tflite or .onnx file or a SavedModel folder"
    )


def _batched(predict_batch: Runner, batch_size: int) -> Runner:
    def predict(images: np.ndarray) -> np.ndarray:
        outputs = [predict_batch(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)

    return predict


def keras_runner(path: Path) -> tuple[Runner, tuple[int, ...]]:
    import keras

    # safe_mode=True, said explicitly: a .keras file must not run code (Lambda bytecode) on load.
    model = keras.models.load_model(path, safe_mode=True)
    return _batched(lambda x: model.predict(x, verbose=0), 256), tuple(model.input_shape[1:])


def saved_model_runner(path: Path) -> tuple[Runner, tuple[int, ...]]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    return _batched(lambda x: next(iter(serve(tf.constant(x)).values())).numpy(), 256), tuple(spec.shape[1:])


def tflite_runner(path: Path) -> tuple[Runner, tuple[int, ...]]:
    import tensorflow as tf

    with warnings.catch_warnings():
        # TF 2.21 announces that tf.lite.Interpreter moves to the ai_edge_litert package; it still runs.
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=None)
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    state = {"batch": None}

    def predict_batch(images: np.ndarray) -> np.ndarray:
        if state["batch"] != len(images):
            interpreter.resize_tensor_input(source["index"], images.shape)
            with quiet.native_chatter_held():
                interpreter.allocate_tensors()
            state["batch"] = len(images)
        interpreter.set_tensor(source["index"], images)
        interpreter.invoke()
        return interpreter.get_tensor(target["index"]).copy()

    return _batched(predict_batch, 256), tuple(int(d) for d in source["shape"][1:])


def onnx_runner(path: Path) -> tuple[Runner, tuple[int, ...]]:
    try:
        import onnxruntime
    except ImportError:
        raise HyperCNNError(
            f"{path} needs onnxruntime; install it with: pip install 'hypercnn[onnx]'"
        ) from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    source = session.get_inputs()[0]
    return (
        _batched(lambda x: session.run(None, {source.name: x})[0], 256),
        tuple(int(d) for d in source.shape[1:]),
    )


RUNNERS = {
    KERAS: keras_runner,
    SAVED_MODEL: saved_model_runner,
    TFLITE: tflite_runner,
    TFLITE_DYNAMIC_RANGE: tflite_runner,
    ONNX: onnx_runner,
}


def load_runner(path: Path, kind: str | None = None) -> tuple[Runner, tuple[int, ...]]:
    """A function from uint8 images to probabilities, and the (height, width, channels) it takes."""
    kind = kind or format_of(path)
    try:
        return RUNNERS[kind](path)
    except HyperCNNError:
        raise
    except Exception as exc:
        raise HyperCNNError(
            f"cannot load model {path} as {kind} ({type(exc).__name__}); re-export it with "
            "'hypercnn finalize RUN --retrain'"
        ) from None
