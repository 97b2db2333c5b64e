"""Every data source, on files the tests write themselves."""

from __future__ import annotations

import functools
import http.server
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

from search.data import cifar_pickles
from search.data.sources import detect_kind, load_raw, read_source
from search.data.split import split_data
from search.errors import HyperCNNError
from tests.conftest import (
    CLASSES,
    make_images,
    write_batch,
    write_batches_dir,
    write_image_folder,
    write_image_zip,
    write_npz,
    write_tarball,
)


def test_tarball_in_the_official_layout_loads_train_and_test(tmp_path: Path, cache_dir: Path) -> None:
    tarball = write_tarball(tmp_path, per_class=6, test_per_class=3)
    raw, sha = load_raw(str(tarball), cache_dir, verify_md5=False)
    assert detect_kind(str(tarball)) == "tarball"
    assert raw.x_train.shape == (60, 32, 32, 3) and raw.x_train.dtype == np.uint8
    assert raw.x_test.shape == (30, 32, 32, 3)
    assert raw.class_names == CLASSES
    assert np.bincount(raw.y_train).tolist() == [6] * 10
    assert len(sha) == 64


def test_batch_pixels_come_back_channels_last(tmp_path: Path) -> None:
    x, y = make_images(1, seed=9)
    with (tmp_path / "data_batch_1").open("wb") as handle:
        write_batch(handle, x, y)
    raw = cifar_pickles.load_batches_dir(tmp_path)
    assert np.array_equal(raw.x_train, x)
    assert raw.y_train.tolist() == y.tolist()


def test_tarball_with_the_wrong_md5_is_refused_with_the_fix(tmp_path: Path) -> None:
    tarball = write_tarball(tmp_path)
    with pytest.raises(HyperCNNError, match=r"md5 .* not the official .*download it again"):
        cifar_pickles.load_tarball(tarball, verify_md5=True)


def test_truncated_tarball_is_a_one_line_error(tmp_path: Path) -> None:
    tarball = write_tarball(tmp_path)
    data = tarball.read_bytes()
    tarball.write_bytes(data[: len(data) // 2])
    with pytest.raises(HyperCNNError, match="cifar-10-python.tar.gz") as error:
        cifar_pickles.load_tarball(tarball, verify_md5=False)
    assert "\n" not in str(error.value)


def test_unpacked_batches_folder_loads(tmp_path: Path) -> None:
    folder = write_batches_dir(tmp_path, per_class=4, test_per_class=2)
    for given in (folder, folder.parent):
        assert detect_kind(str(given)) == "batches"
        raw = read_source(str(given), "batches")
        assert len(raw.y_train) == 40 and len(raw.y_test) == 20


def test_a_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": [0]}, protocol=2))
    with pytest.raises(HyperCNNError, match="refusing posix.system|refusing os.system"):
        cifar_pickles.load_batches_dir(folder)
    assert not (tmp_path / "pwned").exists()


def test_batch_labels_out_of_range_name_the_index_and_the_file(tmp_path: Path) -> None:
    folder = write_batches_dir(tmp_path, per_class=4)
    x, y = make_images(2, seed=5)
    y = y.copy()
    y[3] = 12
    with (folder / "data_batch_2").open("wb") as handle:
        write_batch(handle, x, y)
    with pytest.raises(
        HyperCNNError, match=r"labels must be in 0\.\.9; found 12 at index 3 in .*data_batch_2"
    ):
        cifar_pickles.load_batches_dir(folder)


def test_keras_download_fetches_caches_and_reads_the_tarball(tmp_path: Path) -> None:
    """keras.utils.get_file against a real HTTP server on loopback serving an official-layout tarball."""
    tarball = write_tarball(tmp_path / "served", per_class=3, test_per_class=1)
    sha256 = __import__("hashlib").sha256(tarball.read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tarball.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        origin = f"http://127.0.0.1:{server.server_address[1]}/{tarball.name}"
        raw = cifar_pickles.load_keras_cifar10(
            origin=origin, file_hash=sha256, cache_dir=str(tmp_path / "keras")
        )
    finally:
        server.shutdown()
    assert len(raw.y_train) == 30 and len(raw.y_test) == 10
    assert (tmp_path / "keras" / "datasets" / cifar_pickles.KERAS_CACHE_NAME).is_dir()
    # Second call: served from Keras's cache, no server needed.
    again = cifar_pickles.load_keras_cifar10(
        origin=origin, file_hash=sha256, cache_dir=str(tmp_path / "keras")
    )
    assert np.array_equal(again.x_train, raw.x_train)


def test_keras_download_failure_says_how_to_use_local_data(tmp_path: Path) -> None:
    with pytest.raises(HyperCNNError, match="could not download CIFAR-10 .*--data") as error:
        cifar_pickles.load_keras_cifar10(origin="http://127.0.0.1:9/cifar.tar.gz", cache_dir=str(tmp_path))
    assert "\n" not in str(error.value)


def test_image_folder_with_train_and_test_uses_its_own_test_split(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images", per_class=5, test_per_class=2)
    raw = read_source(str(root), detect_kind(str(root)))
    assert raw.class_names == sorted(CLASSES)
    assert len(raw.y_train) == 50 and len(raw.y_test) == 20
    splits = split_data(raw, seed=0, val_size=10)
    assert splits.test_origin == "source" and splits.sizes["test"] == 20


def test_image_folder_of_class_folders_has_its_test_split_carved(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images", per_class=10)
    raw = read_source(str(root), "folder")
    assert not raw.has_test_split
    splits = split_data(raw, seed=0, val_size=10, test_size=20)
    assert splits.test_origin == "carved"
    assert splits.sizes == {"train": 70, "validation": 10, "test": 20}


def test_zip_with_a_wrapping_folder_reads_like_the_shared_cifar_zip(tmp_path: Path) -> None:
    archive = write_image_zip(tmp_path / "imgs.zip", per_class=4)
    assert detect_kind(str(archive)) == "zip"
    raw = read_source(str(archive), "zip")
    assert raw.class_names == sorted(CLASSES) and len(raw.y_train) == 40


def test_npz_with_class_names(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", per_class=5, num_classes=3)
    raw = read_source(str(path), detect_kind(str(path)))
    assert raw.class_names == CLASSES[:3] and raw.x_train.shape == (15, 32, 32, 3)


def test_second_load_reads_the_uint8_cache_not_the_images(tmp_path: Path, cache_dir: Path) -> None:
    root = write_image_folder(tmp_path / "images", per_class=4)
    first, sha = load_raw(str(root), cache_dir)
    assert list(cache_dir.glob("folder-*.npz"))
    # Garble one image but keep its size and mtime: decoding it again would fail.
    victim = next(root.rglob("*.png"))
    stat = victim.stat()
    victim.write_bytes(b"\0" * stat.st_size)
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second, sha_again = load_raw(str(root), cache_dir)
    assert sha_again == sha
    assert np.array_equal(first.x_train, second.x_train)
