"""The official CIFAR-10 formats: cifar-10-python.tar.gz, the unpacked cifar-10-batches-py/ folder,
and Keras's keras.datasets download (which fetches and unpacks that same tarball)."""

from __future__ import annotations

import pickle
import re
import tarfile
from pathlib import Path
from typing import IO

import numpy as np

from search.checksums import file_digest
from search.data.source import RawData
from search.data.validate import check_labels
from search.errors import HyperCNNError

TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"
KERAS_ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
KERAS_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
KERAS_CACHE_NAME = "cifar-10-batches-py-target"
BATCHES_DIR = "cifar-10-batches-py"
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
_TRAIN_BATCH = re.compile(r"^data_batch_(\d+)$")

# Everything the official batches contain: dicts, lists, bytes, ints and numpy arrays.
# Anything else in a pickle (os.system, eval, ...) is refused before it can run.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: not part of a CIFAR batch")
        if module == "numpy.core.multiarray":  # numpy 1 pickles on numpy 2
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def _unpickle(handle: IO[bytes], name: str) -> dict:
    try:
        content = _BatchUnpickler(handle, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise HyperCNNError(
            f"{name} is not a CIFAR batch ({exc}); use the official cifar-10-python files"
        ) from None
    except Exception as exc:  # truncated or garbled files raise all sorts
        raise HyperCNNError(
            f"{name} is corrupt or truncated ({type(exc).__name__}: {exc}); download it again"
        ) from None
    if not isinstance(content, dict):
        raise HyperCNNError(f"{name} holds a {type(content).__name__}, not a CIFAR batch dict")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in content.items()}


def read_batch(handle: IO[bytes], name: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 N x 32 x 32 x 3 images, int labels)."""
    batch = _unpickle(handle, name)
    if "data" not in batch or "labels" not in batch:
        raise HyperCNNError(
            f"{name} lacks 'data' or 'labels' (has {sorted(batch)}); it is not a CIFAR-10 batch"
        )
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise HyperCNNError(
            f"{name} data is {data.dtype} {data.shape}; CIFAR-10 batches hold uint8 N x 3072 rows"
        )
    labels = check_labels(batch["labels"], len(CIFAR10_CLASSES), name, count=len(data))
    # Rows are three 32x32 planes (R, G, B); Keras and we want channels last.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _class_names(meta: dict | None) -> list[str]:
    if not meta or "label_names" not in meta:
        return list(CIFAR10_CLASSES)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta["label_names"]]
    if len(names) != len(CIFAR10_CLASSES):
        raise HyperCNNError(f"batches.meta lists {len(names)} classes; CIFAR-10 has 10")
    return names


def _assemble(kind: str, batches: dict[str, tuple[np.ndarray, np.ndarray]], meta: dict | None) -> RawData:
    train_names = sorted(
        (name for name in batches if _TRAIN_BATCH.match(name)),
        key=lambda name: int(_TRAIN_BATCH.match(name).group(1)),
    )
    if not train_names:
        raise HyperCNNError(f"{kind} has no data_batch_N files; it is not a CIFAR-10 batches folder")
    x_train = np.concatenate([batches[name][0] for name in train_names])
    y_train = np.concatenate([batches[name][1] for name in train_names])
    x_test, y_test = batches.get("test_batch", (None, None))
    return RawData(kind, _class_names(meta), x_train, y_train, x_test, y_test)


def load_batches_dir(path: Path) -> RawData:
    """An unpacked cifar-10-batches-py/ folder (or its parent)."""
    if (path / BATCHES_DIR).is_dir():
        path = path / BATCHES_DIR
    batches = {}
    for file in sorted(path.iterdir()):
        if _TRAIN_BATCH.match(file.name) or file.name == "test_batch":
            with file.open("rb") as handle:
                batches[file.name] = read_batch(handle, f"{path.name}/{file.name}")
    meta = None
    if (path / "batches.meta").is_file():
        with (path / "batches.meta").open("rb") as handle:
            meta = _unpickle(handle, "batches.meta")
    return _assemble("cifar-10-batches-py", batches, meta)


def load_tarball(path: Path, verify_md5: bool = True) -> RawData:
    """The official cifar-10-python.tar.gz, read in place without unpacking to disk."""
    if verify_md5:
        found = file_digest(path, "md5")
        if found != TARBALL_MD5:
            raise HyperCNNError(
                f"{path.name} has md5 {found}, not the official {TARBALL_MD5}: the download is "
                "corrupt or incomplete; download it again (or pass --no-verify-md5 for an "
                "archive in the same layout that is not the official file)"
            )
    batches, meta = {}, None
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive.getmembers():
                name = Path(member.name).name
                if not member.isfile():
                    continue
                if _TRAIN_BATCH.match(name) or name == "test_batch":
                    batches[name] = read_batch(archive.extractfile(member), f"{path.name}:{name}")
                elif name == "batches.meta":
                    meta = _unpickle(archive.extractfile(member), f"{path.name}:{name}")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise HyperCNNError(
            f"{path} is not a readable tar.gz ({exc}); download cifar-10-python.tar.gz again"
        ) from None
    return _assemble(path.name, batches, meta)


def load_keras_cifar10(
    origin: str = KERAS_ORIGIN, file_hash: str = KERAS_SHA256, cache_dir: str | None = None
) -> RawData:
    """keras.datasets' CIFAR-10: download once into the Keras cache, then read it like a folder."""
    import keras

    if cache_dir is not None:
        # get_file falls back to /tmp/.keras when the cache folder does not exist yet.
        Path(cache_dir).expanduser().mkdir(parents=True, exist_ok=True)
    try:
        extracted = keras.utils.get_file(
            fname=KERAS_CACHE_NAME,
            origin=origin,
            extract=True,
            file_hash=file_hash,
            cache_dir=cache_dir,
        )
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HyperCNNError(
            f"could not download CIFAR-10 ({reason}); check the network, or pass --data (or set "
            "HYPERCNN_DATA) to a local cifar-10-python.tar.gz, cifar-10-batches-py/, image "
            "folder/zip or .npz"
        ) from None
    return load_batches_dir(Path(extracted))
