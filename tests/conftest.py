"""Small data sets the tests make themselves, in every format HyperCNN reads."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


class TensorFlowNotInstalled:
    """An import finder for which TensorFlow does not exist, as on a machine without it."""

    def find_spec(self, name: str, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    # The JAX path must not need TensorFlow (the GPU machines have none): here it cannot be imported,
    # by HyperCNN or by Keras (which otherwise imports an installed TensorFlow to serialize objects).
    sys.meta_path.insert(0, TensorFlowNotInstalled())

from search.quiet import load_keras_backend  # noqa: E402

load_keras_backend()  # before any test module imports it: no start-up chatter in the test output

SHARED_ZIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-train-jpeg.zip"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def float32_unless_a_test_says_otherwise():
    """Each test starts in Keras's float32 policy and leaves it so. An in-process search sets the
    machine's precision globally (mixed bfloat16 on a CPU with AVX512-BF16, float32 without): without
    this, a later test in the same process builds its models in whatever that machine chose."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def make_images(per_class: int, num_classes: int = 10, size: int = 32, seed: int = 0):
    """Learnable images: each class has its own colour and stripe direction, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    rows = np.arange(size)[:, None]
    cols = np.arange(size)[None, :]
    images = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        colour = np.array([(label * 73) % 256, (label * 151) % 256, (label * 31 + 90) % 256])
        stripes = ((rows * (label % 3) + cols * (label // 3 + 1)) // 4) % 2
        base = colour[None, None, :] * (0.55 + 0.45 * stripes[:, :, None])
        noise = rng.normal(0, 18, (size, size, 3))
        images[i] = np.clip(base + noise, 0, 255).astype(np.uint8)
    order = rng.permutation(len(labels))
    return images[order], labels[order]


def write_batch(handle, images: np.ndarray, labels) -> None:
    """The official batch layout: bytes keys, N x 3072 uint8 rows (R, G, B planes), list labels."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    content = {b"batch_label": b"batch", b"labels": [int(v) for v in labels], b"data": rows}
    content[b"filenames"] = [f"{i}.png".encode() for i in range(len(images))]
    pickle.dump(content, handle, protocol=2)


def write_batches_dir(root: Path, per_class: int = 6, test_per_class: int = 3, batches: int = 5) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    x, y = make_images(per_class, seed=1)
    for index, part in enumerate(np.array_split(np.arange(len(y)), batches), start=1):
        with (folder / f"data_batch_{index}").open("wb") as handle:
            write_batch(handle, x[part], y[part])
    x_test, y_test = make_images(test_per_class, seed=2)
    with (folder / "test_batch").open("wb") as handle:
        write_batch(handle, x_test, y_test)
    with (folder / "batches.meta").open("wb") as handle:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}, handle, protocol=2)
    return folder


def write_tarball(root: Path, **kwargs) -> Path:
    folder = write_batches_dir(root / "src", **kwargs)
    tarball = root / "cifar-10-python.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(folder, arcname="cifar-10-batches-py")
    return tarball


def write_image_folder(root: Path, per_class: int = 8, test_per_class: int = 0, suffix: str = ".png") -> Path:
    x, y = make_images(per_class + test_per_class, seed=3)
    seen: dict[int, int] = {}
    for image, label in zip(x, y, strict=True):
        count = seen.get(label, 0)
        seen[label] = count + 1
        split = "test" if count >= per_class else "train"
        target = root / split / CLASSES[label] if test_per_class else root / CLASSES[label]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target / f"{count:04d}{suffix}")
    return root


def write_image_zip(path: Path, per_class: int = 8, wrapper: str = "cifar10/train") -> Path:
    x, y = make_images(per_class, seed=4)
    with zipfile.ZipFile(path, "w") as archive:
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=90)
            archive.writestr(f"{wrapper}/{CLASSES[label]}/{i:04d}.jpg", buffer.getvalue())
    return path


def write_npz(path: Path, per_class: int = 30, num_classes: int = 4, seed: int = 0) -> Path:
    x, y = make_images(per_class, num_classes=num_classes, seed=seed)
    np.savez(path, x=x, y=y, class_names=np.array(CLASSES[:num_classes]))
    return path


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    """A few hundred learnable images, enough for a search of 1-2 epoch trials."""
    return write_npz(tmp_path_factory.mktemp("data") / "tiny.npz", per_class=60, num_classes=4)


def quick_search_config(tmp_path: Path, data: Path, **fields):
    """A quick search's config in tmp_path; defaults fit tiny data (tiny_npz): 40 validation and 40
    test images, short brackets, no progress bar. `fields` override any of them."""
    from search import SearchConfig

    base = dict(
        data=str(data),
        out=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
        max_epochs=2,
        factor=2,
        val_size=40,
        test_size=40,
        progress="off",
    )
    return SearchConfig.create(**{**base, **fields})


def traced_train_step(model, x_spec, y_spec):
    """The model's training step traced once for these input specs: (the tf.function, the op types
    in its graph and in the functions it calls)."""
    import tensorflow as tf

    step = tf.function(lambda x, y: model.train_step((x, y)))
    graph = step.get_concrete_function(x_spec, y_spec).graph.as_graph_def()
    op_types = [node.op for node in graph.node]
    op_types += [node.op for function in graph.library.function for node in function.node_def]
    return step, op_types


# A folder that outlives one pytest session (make test sets it): the shared run is built once there.
SHARED_ACROSS_SESSIONS = "HYPERCNN_TEST_SHARED"


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_npz: Path) -> Path:
    """One searched and finalized run of the `cnn` space on tiny data, through the CLI as a user runs
    it: `hypercnn search`, then `hypercnn report` with a time budget (which finalizes, then renders).
    Shared by the end-to-end, export, predict, page and browser tests; they read it, or copy it.
    Under pytest-xdist every test process has its own session, and make test runs pytest more than
    once: the first to ask builds the run in the folder they all share, the others wait for it (a
    file lock) and read it."""
    import fcntl

    if os.environ.get(SHARED_ACROSS_SESSIONS):
        # `make test`'s parts (pytest sessions) share one run: the tests only read it or copy it.
        shared = Path(os.environ[SHARED_ACROSS_SESSIONS])
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent  # this session's folder, above each worker's own
    else:
        return build_finished_run(tmp_path_factory.mktemp("e2e") / "run", tiny_npz)
    run = shared / "e2e" / "run"
    with (shared / "e2e.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (run / "report" / "metrics.json").is_file():
            # The data beside the run: a later session's temporary folders are not this one's.
            data = shared / "e2e" / "data" / tiny_npz.name
            data.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tiny_npz, data)
            build_finished_run(run, data)
    return run


def build_finished_run(run: Path, data: Path) -> Path:
    from tests.cli import hypercnn, report_budget

    cache = run.parent / "cache"
    common = ["--data", str(data), "--out", str(run), "--cache-dir", str(cache)]
    search = hypercnn(
        "search",
        *common,
        "--space",
        "cnn",
        "--max-epochs",
        "2",
        "--factor",
        "2",
        "--val-size",
        "40",
        "--test-size",
        "40",
    )
    assert "[trial 0000]" in search.stdout and "search finished" in search.stdout
    # A 1-2 epoch retrain of 200 images is a handful of steps; the budget trains it for real (at 7
    # epochs, 14 steps, batch norm's moving statistics were still too far off: test accuracy 0.25).
    report = hypercnn("report", str(run), "--time-budget", f"{report_budget(run, epochs=16):.0f}s")
    assert "test accuracy" in report.stdout
    return run
