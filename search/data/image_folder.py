"""Image folders and .zip files of them: train|test/<class>/*.png|jpg, or <class>/*.

One wrapping folder (like cifar10/ in cifar10/train/cat/0001.jpg) is looked through.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from search.data.source import RawData
from search.data.validate import check_same_image_size
from search.errors import HyperCNNError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
SPLIT_NAMES = ("train", "test")


def _is_image(path: PurePosixPath) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not any(
        part.startswith(".") or part == "__MACOSX" for part in path.parts
    )


def _strip_wrapper(paths: list[PurePosixPath], where: str) -> list[PurePosixPath]:
    """Drop a single top folder that only wraps the real layout."""
    while paths and all(len(p.parts) > 2 for p in paths):
        tops = {p.parts[0] for p in paths}
        if len(tops) != 1 or tops & set(SPLIT_NAMES):
            break
        paths = [PurePosixPath(*p.parts[1:]) for p in paths]
    if not paths:
        raise HyperCNNError(
            f"{where} holds no .png or .jpg images; lay it out as train/<class>/*.png "
            "(optionally test/<class>/*.png) or <class>/*.png"
        )
    return paths


def _layout(paths: list[PurePosixPath], where: str) -> dict[str, dict[str, list[int]]]:
    """split -> class -> indices into paths."""
    layout: dict[str, dict[str, list[int]]] = {}
    split_layout = all(len(p.parts) == 3 and p.parts[0] in SPLIT_NAMES for p in paths)
    class_layout = all(len(p.parts) == 2 for p in paths)
    if not (split_layout or class_layout):
        odd = next(
            p for p in paths if not (len(p.parts) == 2 or (len(p.parts) == 3 and p.parts[0] in SPLIT_NAMES))
        )
        raise HyperCNNError(
            f"{where}: image {odd} is not in a class folder; lay images out as "
            "train/<class>/*.png (optionally test/<class>/*.png) or <class>/*.png"
        )
    for index, path in enumerate(paths):
        split, label = (path.parts[0], path.parts[1]) if split_layout else ("train", path.parts[0])
        layout.setdefault(split, {}).setdefault(label, []).append(index)
    if "train" not in layout:
        raise HyperCNNError(f"{where} has test/ but no train/ folder; add train/<class>/ images")
    unknown = sorted(set(layout.get("test", {})) - set(layout["train"]))
    if unknown:
        raise HyperCNNError(
            f"{where}: test/ has class {unknown[0]!r} that train/ lacks; add training images "
            "for it or remove it from test/"
        )
    return layout


def _decode(read: Callable[[str], bytes], name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(read(name))) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise HyperCNNError(
            f"cannot decode image {name} ({type(exc).__name__}: {exc}); replace or delete that file"
        ) from None


def _load(kind: str, where: str, names: list[str], read: Callable[[str], bytes]) -> RawData:
    paths = _strip_wrapper([PurePosixPath(n) for n in names], where)
    layout = _layout(paths, where)
    class_names = sorted(layout["train"])
    # Pillow decodes outside the GIL, so a few threads use every core.
    with ThreadPoolExecutor(max_workers=4) as pool:
        decoded = pool.map(lambda n: _decode(read, n), names)
        images = list(tqdm(decoded, total=len(names), desc=f"decoding {where}", unit="img", disable=None))
    check_same_image_size([im.shape for im in images], names)

    def gather(split: str) -> tuple[np.ndarray, np.ndarray]:
        indices, labels = [], []
        for label, label_name in enumerate(class_names):
            found = layout[split].get(label_name, [])
            indices += found
            labels += [label] * len(found)
        return np.stack([images[i] for i in indices]), np.asarray(labels, dtype=np.int64)

    x_train, y_train = gather("train")
    x_test, y_test = gather("test") if "test" in layout else (None, None)
    return RawData(kind, class_names, x_train, y_train, x_test, y_test)


def load_image_folder(path: Path) -> RawData:
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    names = [n for n in files if _is_image(PurePosixPath(n))]
    return _load("image folder", str(path), names, lambda n: (path / n).read_bytes())


def load_image_zip(path: Path) -> RawData:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise HyperCNNError(f"{path} is not a readable zip ({exc}); re-create or re-download it") from None
    with archive:
        names = sorted(n for n in archive.namelist() if not n.endswith("/") and _is_image(PurePosixPath(n)))
        # zipfile handles are not thread-safe for concurrent reads; read bytes first, decode in threads
        blobs = {}
        try:
            for name in names:
                blobs[name] = archive.read(name)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise HyperCNNError(
                f"cannot read {name} from {path.name} ({exc}); the zip is corrupt: re-create it"
            ) from None
    return _load("image zip", path.name, names, blobs.__getitem__)
