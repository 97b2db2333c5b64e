"""Image folders and .zip files of them: train|test/<class>/*.png|jpg, or <class>/*.

One wrapping folder (like cifar10/ in cifar10/train/cat/0001.jpg) is looked through.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from search.data import limits
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


def decode_image(content: bytes | Path, name: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB uint8 pixels of a PNG/JPEG file, refusing oversized images from their header, before
    decoding; `size` (height, width) resizes it."""
    source = io.BytesIO(content) if isinstance(content, bytes) else content
    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, on images past its own bomb limit: both are refusals here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size  # from the header: nothing decoded yet
                if width * height > limits.MAX_IMAGE_PIXELS:
                    raise HyperCNNError(
                        f"image {name} is {width}x{height} pixels, over the limit of "
                        f"{limits.MAX_IMAGE_PIXELS:,}; resize it or remove it from the data"
                    )
                image = image.convert("RGB")
                if size is not None and image.size != (size[1], size[0]):
                    image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                return np.asarray(image, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise HyperCNNError(f"image {name} is a decompression bomb ({exc}); remove it") from None
    except UnidentifiedImageError:
        raise HyperCNNError(
            f"cannot decode image {name}: not a PNG or JPEG file; replace or delete it"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise HyperCNNError(
            f"cannot decode image {name} ({type(exc).__name__}: {exc}); replace or delete that file"
        ) from None


def _decode(read: Callable[[str], bytes], name: str) -> np.ndarray:
    return decode_image(read(name), name)


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
        members = [m for m in archive.infolist() if not m.is_dir() and _is_image(PurePosixPath(m.filename))]
        check_zip_members(members, archive, path.name)
        members.sort(key=lambda m: m.filename)
        # zipfile handles are not thread-safe for concurrent reads; read bytes first, decode in threads
        blobs = {}
        try:
            for member in members:
                with archive.open(member) as stream:
                    # Never more than the central directory declared, whatever the data inflates to.
                    blobs[member.filename] = stream.read(member.file_size + 1)
                if len(blobs[member.filename]) > member.file_size:
                    raise HyperCNNError(
                        f"{member.filename} in {path.name} inflates past its declared size; the zip is "
                        "corrupt or hostile: re-create it"
                    )
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
            raise HyperCNNError(
                f"cannot read {member.filename} from {path.name} ({exc}); the zip is corrupt: re-create it"
            ) from None
    return _load("image zip", path.name, sorted(blobs), blobs.__getitem__)


def check_zip_members(members: list[zipfile.ZipInfo], archive: zipfile.ZipFile, where: str) -> None:
    """From the central directory, before anything is read: count, sizes, compression ratio and
    encryption, each against search.data.limits."""
    count = len(archive.infolist())
    if count > limits.MAX_ZIP_MEMBERS:
        raise HyperCNNError(
            f"{where} has {count:,} members, over the limit of {limits.MAX_ZIP_MEMBERS:,}; "
            "split the data set into several archives or unpack it into a folder"
        )
    total = 0
    for member in members:
        if member.flag_bits & 0x1:
            raise HyperCNNError(f"{member.filename} in {where} is encrypted; give an unencrypted zip")
        if member.file_size > limits.MAX_MEMBER_BYTES:
            raise HyperCNNError(
                f"{member.filename} in {where} unpacks to {member.file_size:,} bytes, over the "
                f"{limits.MAX_MEMBER_BYTES:,}-byte limit for one image; remove it"
            )
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > limits.MAX_COMPRESSION_RATIO * max(member.compress_size, 1) + 2**16:
            raise HyperCNNError(
                f"{member.filename} in {where} inflates {ratio:,.0f}x "
                "(a zip bomb, not an image file); remove it"
            )
        total += member.file_size
    if total > limits.MAX_TOTAL_BYTES:
        raise HyperCNNError(
            f"{where}'s images unpack to {total:,} bytes, over the {limits.MAX_TOTAL_BYTES:,}-byte limit; "
            "use a subset of the data"
        )
