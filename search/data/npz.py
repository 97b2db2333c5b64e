"""NumPy .npz files: x (uint8 N x H x W x 3) and y, optionally x_test/y_test and class_names."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from search.data.source import RawData
from search.errors import HyperCNNError


def load_npz(path: Path) -> RawData:
    try:
        # allow_pickle=False: an .npz must never run code when loaded.
        with np.load(path, allow_pickle=False) as content:
            arrays = {key: content[key] for key in content.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise HyperCNNError(
            f"{path} is not a readable .npz ({exc}); save it with np.savez(path, x=..., y=...)"
        ) from None
    if "x" not in arrays or "y" not in arrays:
        raise HyperCNNError(
            f"{path.name} has arrays {sorted(arrays)}; it needs 'x' (uint8 N x H x W x 3) and 'y' "
            "(labels): save it with np.savez(path, x=images, y=labels)"
        )
    labels = [np.asarray(arrays["y"]).reshape(-1)]
    if "y_test" in arrays:
        labels.append(np.asarray(arrays["y_test"]).reshape(-1))
    if "class_names" in arrays:
        class_names = [str(name) for name in arrays["class_names"]]
    else:
        all_labels = np.concatenate(labels)
        if all_labels.dtype.kind not in "iu":
            raise HyperCNNError(f"labels in {path.name} are {all_labels.dtype}; expected integers")
        class_names = [str(i) for i in range(int(all_labels.max()) + 1)]
    return RawData(
        f"npz {path.name}",
        class_names,
        arrays["x"],
        arrays["y"],
        arrays.get("x_test"),
        arrays.get("y_test"),
    )
