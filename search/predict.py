"""load_model and Classifier: reuse an exported model on image files, folders or arrays."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from search.data.image_folder import IMAGE_SUFFIXES, decode_image
from search.errors import HyperCNNError


@dataclasses.dataclass
class Prediction:
    file: str
    label: str
    probability: float


class Classifier:
    """An exported HyperCNN model with its class names; takes uint8 RGB images."""

    def __init__(self, model, classes: list[str], description: dict) -> None:
        self.model = model
        self.classes = classes
        self.description = description

    @property
    def input_size(self) -> tuple[int, int]:
        height, width = self.model.input_shape[1:3]
        return int(height), int(width)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        expected = (*self.input_size, 3)
        if images.shape[1:] != expected or images.dtype != np.uint8:
            raise HyperCNNError(
                f"images are {images.dtype} {images.shape[1:]}; this model takes uint8 {expected} "
                "(use predict_files for image files of any size)"
            )
        return self.model.predict(images, batch_size=256, verbose=0)

    def predict(self, images: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(images).argmax(axis=1)]

    def predict_files(self, paths: list[str | Path]) -> list[Prediction]:
        """Files and folders (searched recursively for .png/.jpg); resized to the model's input."""
        files = expand_paths(paths)
        images = np.stack([read_image(f, self.input_size) for f in files])
        probabilities = self.predict_proba(images)
        best = probabilities.argmax(axis=1)
        return [
            Prediction(str(f), self.classes[i], float(probabilities[row, i]))
            for row, (f, i) in enumerate(zip(files, best, strict=True))
        ]


def expand_paths(paths: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise HyperCNNError(f"folder {path} holds no .png or .jpg images")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise HyperCNNError(f"image {path} does not exist; give image files or folders of them")
    if not files:
        raise HyperCNNError("no images given; name image files or folders to classify")
    return files


def read_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The image resized to the model's input (height, width); oversized or broken files refused."""
    return decode_image(path, str(path), size)


def load_model(path: str | Path) -> Classifier:
    """Load best.keras (or a run folder) with the class names from its model.json."""
    import keras

    path = Path(path)
    if path.is_dir():
        path = path / "model" / "best.keras" if (path / "model").is_dir() else path / "best.keras"
    if not path.is_file():
        raise HyperCNNError(f"model {path} does not exist; run 'hypercnn report RUN' to export one")
    description_file = path.with_name("model.json")
    try:
        description = json.loads(description_file.read_text()) if description_file.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HyperCNNError(
            f"{description_file} is not valid JSON ({exc}); re-export with hypercnn report"
        ) from None
    try:
        # safe_mode: a .keras file must not run code (Lambda layers' bytecode) when it is loaded.
        model = keras.models.load_model(path, safe_mode=True)
    except Exception as exc:
        raise HyperCNNError(
            f"cannot load model {path} ({type(exc).__name__}); re-export it with hypercnn report"
        ) from None
    classes = description.get("classes") or [str(i) for i in range(model.output_shape[-1])]
    return Classifier(model, classes, description)
