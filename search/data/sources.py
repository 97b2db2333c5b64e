"""Which source a --data value names, and reading it through the uint8 cache."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from search.checksums import file_digest
from search.data import cifar_pickles, image_folder, npz
from search.data.source import RawData
from search.errors import HyperCNNError

KERAS_DOWNLOAD = "cifar10"
KINDS = (
    "'cifar10' (Keras download), cifar-10-python.tar.gz, cifar-10-batches-py/, "
    "an image folder or .zip, or a .npz"
)


def detect_kind(data: str) -> str:
    """One of: keras, tarball, batches, folder, zip, npz."""
    path = Path(data).expanduser()
    if data == KERAS_DOWNLOAD and not path.exists():
        return "keras"
    if not path.exists():
        raise HyperCNNError(f"data path {data} does not exist; pass --data (or set HYPERCNN_DATA) to {KINDS}")
    if path.is_dir():
        for candidate in (path, path / cifar_pickles.BATCHES_DIR):
            if (candidate / "data_batch_1").is_file():
                return "batches"
        return "folder"
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tarball"
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(".npz"):
        return "npz"
    raise HyperCNNError(f"cannot tell what kind of data {path.name} is; give {KINDS}")


def fingerprint(data: str, kind: str) -> str:
    """sha256 of a data file; for folders, of every file's path, size and mtime."""
    if kind == "keras":  # the download is verified against this hash by Keras itself
        return cifar_pickles.KERAS_SHA256
    path = Path(data).expanduser()
    if path.is_file():
        return file_digest(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read_source(data: str, kind: str, verify_md5: bool = True) -> RawData:
    path = Path(data).expanduser()
    if kind == "keras":
        return cifar_pickles.load_keras_cifar10()
    if kind == "tarball":
        return cifar_pickles.load_tarball(path, verify_md5=verify_md5)
    if kind == "batches":
        return cifar_pickles.load_batches_dir(path)
    if kind == "folder":
        return image_folder.load_image_folder(path)
    if kind == "zip":
        return image_folder.load_image_zip(path)
    if kind == "npz":
        return npz.load_npz(path)
    raise HyperCNNError(f"unknown data kind {kind!r}; give {KINDS}")


def load_raw(data: str, cache_dir: str | Path, verify_md5: bool = True) -> tuple[RawData, str]:
    """Decode once, then reuse the uint8 arrays cached under cache_dir. Returns (data, sha256)."""
    kind = detect_kind(data)
    sha256 = fingerprint(data, kind)
    cache = Path(cache_dir).expanduser() / f"{kind}-{sha256[:20]}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as stored:
                arrays = {key: stored[key] for key in stored.files}
            return (
                RawData(
                    str(arrays["kind"]),
                    [str(n) for n in arrays["class_names"]],
                    arrays["x_train"],
                    arrays["y_train"],
                    arrays.get("x_test"),
                    arrays.get("y_test"),
                ),
                sha256,
            )
        except Exception:  # a damaged cache is only a cache: decode again
            cache.unlink(missing_ok=True)
    raw = read_source(data, kind, verify_md5=verify_md5)
    arrays = {
        "kind": np.array(raw.kind),
        "class_names": np.array(raw.class_names),
        "x_train": raw.x_train,
        "y_train": raw.y_train,
    }
    if raw.has_test_split:
        arrays.update(x_test=raw.x_test, y_test=raw.y_test)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(".partial.npz")
        np.savez(partial, **arrays)
        partial.replace(cache)  # atomic: a killed run never leaves a half-written cache
    except OSError as exc:
        print(f"note: could not cache decoded data in {cache.parent} ({exc})", file=sys.stderr)
    return raw, sha256
