"""load_model and Classifier: reuse an exported model (any format) on image files, folders, .npz
arrays or arrays in memory; write_predictions: CSV or JSON."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from search import formats
from search.data.image_folder import IMAGE_SUFFIXES, decode_image
from search.errors import HyperCNNError

# From this many images on, predict shows a progress bar (on standard error).
PROGRESS_FROM = 200
# Images decoded and classified at a time: bounded memory for a folder of any size.
CHUNK = 512


@dataclasses.dataclass
class Prediction:
    file: str
    label: str
    probability: float


class Classifier:
    """An exported HyperCNN model with its class names; takes uint8 RGB images."""

    def __init__(
        self, predict: formats.Runner, input_shape: tuple[int, ...], classes: list[str], description: dict
    ) -> None:
        self._predict = predict
        self.input_shape = tuple(int(d) for d in input_shape)
        self.classes = classes
        self.description = description

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_shape[0], self.input_shape[1]

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
        return np.asarray(self._predict(np.ascontiguousarray(images)))

    def predict(self, images: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(images).argmax(axis=1)]

    def predict_files(self, paths: list[str | Path], progress: bool | None = None) -> list[Prediction]:
        """Image files and folders (searched recursively for .png/.jpg), resized to the model's input,
        and .npz files (their 'x' array, or 'images'); rows named file.npz[i]."""
        items = list(expand_inputs(paths))
        show = len(items) >= PROGRESS_FROM if progress is None else progress
        predictions: list[Prediction] = []
        with tqdm(total=len(items), unit="image", disable=not show, file=sys.stderr) as bar:
            for start in range(0, len(items), CHUNK):
                chunk = items[start : start + CHUNK]
                images = np.stack([image(self.input_size) for _, image in chunk])
                probabilities = self.predict_proba(images)
                for (name, _), row in zip(chunk, probabilities, strict=True):
                    best = int(row.argmax())
                    predictions.append(Prediction(name, self.classes[best], float(row[best])))
                bar.update(len(chunk))
        return predictions


def _file_image(path: Path):
    return lambda size: decode_image(path, str(path), size)


def _npz_images(path: Path) -> list[tuple[str, object]]:
    try:
        with np.load(path, allow_pickle=False) as content:
            key = "x" if "x" in content.files else "images" if "images" in content.files else None
            if key is None:
                raise HyperCNNError(
                    f"{path} has arrays {sorted(content.files)}; predict reads its 'x' (or 'images') array "
                    "of uint8 N x H x W x 3 images"
                )
            images = content[key]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise HyperCNNError(
            f"{path} is not a readable .npz ({exc}); save it with np.savez(path, x=...)"
        ) from None
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise HyperCNNError(
            f"{path}: images are {images.dtype} {images.shape}; predict takes uint8 N x H x W x 3"
        )

    def sized(index: int):
        def load(size: tuple[int, int]) -> np.ndarray:
            if images.shape[1:3] != size:
                raise HyperCNNError(
                    f"{path}: images are {images.shape[1]}x{images.shape[2]}; this model takes "
                    f"{size[0]}x{size[1]} (resize them, or save them as image files)"
                )
            return images[index]

        return load

    return [(f"{path}[{i}]", sized(i)) for i in range(len(images))]


def expand_inputs(paths: list[str | Path]) -> Iterator[tuple[str, object]]:
    """(name, loader) for every image to classify, in the order given (folders sorted)."""
    found_any = False
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise HyperCNNError(f"folder {path} holds no .png or .jpg images")
            for file in files:
                found_any = True
                yield str(file), _file_image(file)
        elif path.is_file() and path.suffix.lower() == ".npz":
            for item in _npz_images(path):
                found_any = True
                yield item
        elif path.is_file():
            found_any = True
            yield str(path), _file_image(path)
        else:
            raise HyperCNNError(
                f"image {path} does not exist; give image files, folders of them or .npz files"
            )
    if not found_any:
        raise HyperCNNError("no images given; name image files, folders or .npz files to classify")


def resolve_model_path(path: Path) -> Path:
    """A run folder or model/ folder means its best.keras; anything else is taken as given."""
    if path.is_dir() and not (path / "saved_model.pb").is_file():
        for candidate in (path / "model" / "best.keras", path / "best.keras"):
            if candidate.is_file():
                return candidate
        raise HyperCNNError(f"{path} holds no exported model; run 'hypercnn finalize RUN' to export one")
    if not path.exists():
        raise HyperCNNError(f"model {path} does not exist; run 'hypercnn finalize RUN' to export one")
    return path


def load_model(path: str | Path) -> Classifier:
    """Load an exported model (best.keras, saved_model/, model.tflite, model.onnx, or a run folder)
    with the class names from the model.json beside it."""
    path = resolve_model_path(Path(path))
    kind = formats.format_of(path)
    description_file = path.parent / "model.json"
    try:
        description = json.loads(description_file.read_text()) if description_file.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HyperCNNError(
            f"{description_file} is not valid JSON ({exc}); re-export with hypercnn finalize --retrain"
        ) from None
    predict, input_shape = formats.load_runner(path, kind)
    classes = description.get("classes")
    if not classes:
        outputs = predict(np.zeros((1, *input_shape), dtype=np.uint8)).shape[-1]
        classes = [str(i) for i in range(outputs)]
    return Classifier(predict, input_shape, classes, description)


def write_predictions(predictions: list[Prediction], kind: str, target: io.TextIOBase) -> None:
    """csv (a header, a row per image), json (one array) or jsonl (an object per line)."""
    rows = [{"file": p.file, "class": p.label, "probability": round(p.probability, 6)} for p in predictions]
    if kind == "csv":
        writer = csv.DictWriter(target, fieldnames=["file", "class", "probability"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    elif kind == "json":
        json.dump(rows, target, indent=1)
        target.write("\n")
    elif kind == "jsonl":
        for row in rows:
            target.write(json.dumps(row) + "\n")
    else:
        raise HyperCNNError(f"--format {kind!r} is unknown; use csv, json or jsonl")
