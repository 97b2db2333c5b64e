"""Every bad input gets one line naming the problem and the fix; the CLI exits 2 without a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.cli import main
from tests.conftest import make_images, write_image_folder


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse exits on bad flags
        code = exit_.code
    err = capsys.readouterr().err.strip()
    return code, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def search(tmp_path: Path, data: str, *extra: str) -> list[str]:
    return [
        "search",
        "--data",
        data,
        "--out",
        str(tmp_path / "run"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--max-epochs",
        "1",
        *extra,
    ]


def test_missing_path(tmp_path: Path, capsys) -> None:
    code, err = run_cli(capsys, *search(tmp_path, str(tmp_path / "nowhere.zip")))
    assert_one_line_error(code, err, "does not exist", "--data")


def test_unknown_data_kind(tmp_path: Path, capsys) -> None:
    odd = tmp_path / "data.parquet"
    odd.write_bytes(b"PAR1")
    code, err = run_cli(capsys, *search(tmp_path, str(odd)))
    assert_one_line_error(code, err, "cannot tell what kind of data data.parquet is")


def test_corrupt_image_is_named(tmp_path: Path, capsys) -> None:
    root = write_image_folder(tmp_path / "images", per_class=4)
    (root / "cat" / "0002.png").write_bytes(b"not a png at all")
    code, err = run_cli(capsys, *search(tmp_path, str(root)))
    assert_one_line_error(code, err, "cat/0002.png", "replace or delete")


def test_mixed_image_sizes_are_named(tmp_path: Path, capsys) -> None:
    root = write_image_folder(tmp_path / "images", per_class=4)
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(root / "dog" / "0001.png")
    code, err = run_cli(capsys, *search(tmp_path, str(root)))
    assert_one_line_error(code, err, "dog/0001.png is 28x28", "resize")


def test_labels_out_of_range(tmp_path: Path, capsys) -> None:
    x, y = make_images(5, num_classes=3)
    y = y.copy()
    y[7] = 5
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=np.array(["a", "b", "c"]))
    code, err = run_cli(capsys, *search(tmp_path, str(tmp_path / "d.npz")))
    assert_one_line_error(code, err, "labels must be in 0..2; found 5 at index 7")


def test_wrong_image_shape(tmp_path: Path, capsys) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 32, 32), np.uint8), y=np.zeros(10, int))
    code, err = run_cli(capsys, *search(tmp_path, str(tmp_path / "d.npz")))
    assert_one_line_error(code, err, "shape (10, 32, 32)", "N x H x W x 3")


def test_class_with_too_few_images_to_split(tmp_path: Path, capsys) -> None:
    root = write_image_folder(tmp_path / "images", per_class=6)
    for extra in sorted((root / "frog").iterdir())[2:]:
        extra.unlink()
    code, err = run_cli(capsys, *search(tmp_path, str(root)))
    assert_one_line_error(code, err, "class 'frog' has 2 image(s)", "at least 3")


def test_test_split_class_unknown_to_train(tmp_path: Path, capsys) -> None:
    root = write_image_folder(tmp_path / "images", per_class=4, test_per_class=2)
    (root / "test" / "unicorn").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "test" / "unicorn" / "0.png")
    code, err = run_cli(capsys, *search(tmp_path, str(root)))
    assert_one_line_error(code, err, "class 'unicorn' that train/ lacks")


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--time-budget", "soon"], "is not a duration"),
        (["--max-epochs", "0"], "--max-epochs must be at least 1"),
        (["--space", "nope"], "unknown space 'nope'"),
        (["--val-size", "lots"], "neither a count nor a fraction"),
        (["--precision", "fp8"], "--precision 'fp8' is unknown"),
    ],
)
def test_bad_flags(tmp_path: Path, capsys, flags: list[str], needle: str) -> None:
    code, err = run_cli(capsys, *search(tmp_path, "cifar10"), *flags)
    assert_one_line_error(code, err, needle)


def test_report_on_a_folder_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    code, err = run_cli(capsys, "report", str(tmp_path))
    assert_one_line_error(code, err, "not a HyperCNN run folder")


def test_predict_with_a_missing_model(tmp_path: Path, capsys) -> None:
    code, err = run_cli(capsys, "predict", str(tmp_path / "best.keras"), str(tmp_path))
    assert_one_line_error(code, err, "does not exist", "hypercnn report")
