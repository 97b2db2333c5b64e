"""Malformed and hostile inputs through the CLI's entry point (in process): each one ends with exit
status 2, one line naming the problem, no traceback, and nothing half-written in the run folder."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.cli import main
from search.data import limits
from tests.conftest import CLASSES, make_images, write_image_folder, write_image_zip

# ---- makers: each writes one malformed input under tmp_path and returns the --data value ----


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header (IHDR, with a valid CRC) claims width x height; no pixel data follows that
    could fill it. Pillow reads the size from it without decoding anything."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)  # far too little for the size claimed
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def image_folder_with(tmp_path: Path, name: str, content: bytes) -> str:
    root = write_image_folder(tmp_path / "images", per_class=4)
    (root / "cat" / name).write_bytes(content)
    return str(root)


def npz_with(tmp_path: Path, **arrays) -> str:
    x, y = make_images(5, num_classes=3)
    content = {"x": x, "y": y, "class_names": np.array(CLASSES[:3]), **arrays}
    np.savez(tmp_path / "d.npz", **{k: v for k, v in content.items() if v is not None})
    return str(tmp_path / "d.npz")


def patch_zip_member(
    path: Path, member: str, flag_bits: int | None = None, file_size: int | None = None
) -> None:
    """Rewrite a member's central-directory entry (flags, declared uncompressed size) in place."""
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")  # the first central-directory entry
    while central != -1:
        name_length = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + name_length].decode() == member:
            if flag_bits is not None:
                struct.pack_into("<H", data, central + 8, flag_bits)
            if file_size is not None:
                struct.pack_into("<I", data, central + 24, file_size)
            break
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))


def first_member(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()[0]


def zip_with_encrypted_member(tmp_path: Path) -> str:
    path = write_image_zip(tmp_path / "d.zip", per_class=4)
    patch_zip_member(path, first_member(path), flag_bits=0x1)
    return str(path)


def zip_declaring_a_huge_member(tmp_path: Path) -> str:
    path = write_image_zip(tmp_path / "d.zip", per_class=4)
    patch_zip_member(path, first_member(path), file_size=limits.MAX_MEMBER_BYTES + 1)
    return str(path)


def zip_bomb(tmp_path: Path) -> str:
    """A member that inflates 1,000x: 10 MB of zeros deflated to about 10 KB."""
    path = write_image_zip(tmp_path / "d.zip", per_class=4)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cifar10/train/cat/bomb.png", b"\x00" * 10_000_000)
    return str(path)


def zip_member_inflating_past_its_declared_size(tmp_path: Path) -> str:
    path = tmp_path / "d.zip"
    write_image_zip(path, per_class=4)
    member = first_member(path)
    with zipfile.ZipFile(path) as archive:
        declared = archive.getinfo(member).file_size
    patch_zip_member(path, member, file_size=declared // 2)
    return str(path)


def truncated_zip(tmp_path: Path) -> str:
    path = write_image_zip(tmp_path / "d.zip", per_class=4)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return str(path)


def zip_with_truncated_jpeg(tmp_path: Path) -> str:
    x, y = make_images(4, seed=5)
    path = tmp_path / "d.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG")
            content = buffer.getvalue()
            archive.writestr(f"{CLASSES[label]}/{i:03d}.jpg", content[:40] if i == 7 else content)
    return str(path)


def zip_with_too_many_members(tmp_path: Path, monkeypatch) -> str:
    monkeypatch.setattr(limits, "MAX_ZIP_MEMBERS", 20)
    return str(write_image_zip(tmp_path / "d.zip", per_class=4))


def zip_over_the_total_size(tmp_path: Path, monkeypatch) -> str:
    monkeypatch.setattr(limits, "MAX_TOTAL_BYTES", 10_000)
    return str(write_image_zip(tmp_path / "d.zip", per_class=4))


def pillow_bomb(tmp_path: Path, monkeypatch) -> str:
    """Within our pixel limit but past Pillow's own: its DecompressionBombWarning/Error."""
    monkeypatch.setattr(limits, "MAX_IMAGE_PIXELS", 10**12)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    return image_folder_with(tmp_path, "0100.png", png_bytes(np.zeros((32, 32, 3), np.uint8)))


def empty_image_folder(tmp_path: Path) -> str:
    (tmp_path / "images" / "cat").mkdir(parents=True)
    (tmp_path / "images" / "cat" / "notes.txt").write_text("no images here")
    return str(tmp_path / "images")


def images_outside_class_folders(tmp_path: Path) -> str:
    root = write_image_folder(tmp_path / "images", per_class=4)
    (root / "loose.png").write_bytes(png_bytes(np.zeros((32, 32, 3), np.uint8)))
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "deep.png").write_bytes(png_bytes(np.zeros((32, 32, 3), np.uint8)))
    return str(root)


def folder_with_test_class_unknown_to_train(tmp_path: Path) -> str:
    root = write_image_folder(tmp_path / "images", per_class=4, test_per_class=2)
    (root / "test" / "unicorn").mkdir()
    (root / "test" / "unicorn" / "0.png").write_bytes(png_bytes(np.zeros((32, 32, 3), np.uint8)))
    return str(root)


def garbage_file(tmp_path: Path, name: str) -> str:
    (tmp_path / name).write_bytes(b"\x00garbage, not the format its name says" * 10)
    return str(tmp_path / name)


SEARCH_CASES: dict[str, tuple[Callable[..., str], tuple[str, ...]]] = {
    "400-megapixel PNG header": (
        lambda t, m: image_folder_with(t, "0100.png", png_header_claiming(20_000, 20_000)),
        ("0100.png", "decompression bomb", "400000000 pixels"),
    ),
    "Pillow decompression bomb": (pillow_bomb, ("decompression bomb",)),
    # Under Pillow's own limit (179 megapixels), over ours: refused from the header all the same.
    "8,100 x 8,100 PNG header": (
        lambda t, m: image_folder_with(t, "0100.png", png_header_claiming(8100, 8100)),
        ("8100x8100 pixels", "over the limit", "resize it"),
    ),
    "corrupt PNG": (
        lambda t, m: image_folder_with(t, "0100.png", b"not a png"),
        ("0100.png", "replace or delete"),
    ),
    "truncated PNG": (
        lambda t, m: image_folder_with(t, "0100.png", png_bytes(np.zeros((32, 32, 3), np.uint8))[:60]),
        ("0100.png",),
    ),
    "mixed image sizes": (
        lambda t, m: image_folder_with(t, "0100.png", png_bytes(np.zeros((28, 30, 3), np.uint8))),
        ("is 30x28", "resize"),
    ),
    "empty image folder": (lambda t, m: empty_image_folder(t), ("holds no .png or .jpg images",)),
    "images outside class folders": (
        lambda t, m: images_outside_class_folders(t),
        ("not in a class folder",),
    ),
    "zip: not a zip": (lambda t, m: garbage_file(t, "d.zip"), ("not a readable zip",)),
    "zip: truncated": (lambda t, m: truncated_zip(t), ("zip",)),
    "zip: encrypted member": (
        lambda t, m: zip_with_encrypted_member(t),
        ("is encrypted", "give an unencrypted zip"),
    ),
    "zip: member declared over the size limit": (
        lambda t, m: zip_declaring_a_huge_member(t),
        ("limit for one image",),
    ),
    "zip: bomb (1,000x compression)": (lambda t, m: zip_bomb(t), ("zip bomb", "bomb.png")),
    "zip: member inflating past its declared size": (
        lambda t, m: zip_member_inflating_past_its_declared_size(t),
        ("zip",),
    ),
    "zip: too many members": (zip_with_too_many_members, ("members, over the limit",)),
    "zip: total size over the limit": (zip_over_the_total_size, ("unpack to", "limit")),
    "zip: truncated JPEG member": (lambda t, m: zip_with_truncated_jpeg(t), ("007.jpg",)),
    "npz: not a zip": (lambda t, m: garbage_file(t, "d.npz"), ("not a readable .npz",)),
    "npz: float images": (
        lambda t, m: npz_with(t, x=np.zeros((15, 32, 32, 3), np.float32)),
        ("float32", "uint8"),
    ),
    "npz: images with NaN": (
        lambda t, m: npz_with(t, x=np.full((15, 32, 32, 3), np.nan)),
        ("float64", "expected uint8"),
    ),
    "npz: images of rank 3": (
        lambda t, m: npz_with(t, x=np.zeros((15, 32, 32), np.uint8)),
        ("N x H x W x 3",),
    ),
    "npz: grey images (1 channel)": (
        lambda t, m: npz_with(t, x=np.zeros((15, 32, 32, 1), np.uint8)),
        ("N x H x W x 3",),
    ),
    "npz: no images": (lambda t, m: npz_with(t, x=np.zeros((0, 32, 32, 3), np.uint8)), ("holds no images",)),
    "npz: negative label": (lambda t, m: npz_with(t, y=np.array([-1] + [0] * 14)), ("found -1 at index 0",)),
    "npz: label out of range": (
        lambda t, m: npz_with(t, y=np.array([0] * 14 + [7])),
        ("found 7 at index 14",),
    ),
    "npz: non-integer labels": (lambda t, m: npz_with(t, y=np.linspace(0, 2, 15)), ("float64", "integer")),
    "npz: NaN labels": (lambda t, m: npz_with(t, y=np.full(15, np.nan)), ("float64", "integer")),
    "npz: labels of another length": (
        lambda t, m: npz_with(t, y=np.zeros(9, np.int64)),
        ("15 images but 9 labels",),
    ),
    "npz: 2-D labels": (lambda t, m: npz_with(t, y=np.zeros((15, 3), np.int64)), ("shape (15, 3)",)),
    "npz: no labels": (lambda t, m: npz_with(t, y=None), ("needs 'x'", "'y'")),
    "npz: a pickled object array": (
        lambda t, m: npz_with(t, y=np.array([object()] * 15, dtype=object)),
        ("not a readable .npz",),
    ),
    "npz: a class with too few images": (
        lambda t, m: npz_with(t, y=np.array([0] * 7 + [1] * 7 + [2])),
        ("class 'bird' has 1 image(s)",),
    ),
    "image folder: a test class that train/ lacks": (
        lambda t, m: folder_with_test_class_unknown_to_train(t),
        ("class 'unicorn' that train/ lacks",),
    ),
    "image folder: a class with too few images": (
        lambda t, m: str(write_image_folder(t / "images", per_class=2)),
        ("has 2 image(s)", "at least 3"),
    ),
    "unknown data kind": (lambda t, m: garbage_file(t, "d.parquet"), ("cannot tell what kind of data",)),
    "missing data path": (lambda t, m: str(t / "nowhere.zip"), ("does not exist",)),
}


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse exits on bad flags
        code = exit_.code
    return code, capsys.readouterr().err.strip()


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err


def no_partial_files(folder: Path) -> bool:
    return not any(p.name.endswith(".partial") or ".partial." in p.name for p in folder.rglob("*"))


@pytest.mark.parametrize("case", sorted(SEARCH_CASES))
def test_malformed_data_is_one_line_and_leaves_no_run_folder(
    case: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    make, needles = SEARCH_CASES[case]
    data = make(tmp_path, monkeypatch)
    run = tmp_path / "run"
    code, err = run_cli(
        capsys, "search", "--data", data, "--out", str(run), "--cache-dir", str(tmp_path / "cache")
    )
    assert_one_line_error(code, err, *needles)
    assert not run.exists(), f"{case}: left {sorted(p.name for p in run.rglob('*'))}"
    assert not (tmp_path / "cache").exists() or no_partial_files(tmp_path / "cache")


def test_bad_data_does_not_wipe_an_earlier_run_even_with_overwrite(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "trials.csv").write_text("trial_id\n0000\n")
    code, err = run_cli(
        capsys, "search", "--data", str(tmp_path / "nowhere.npz"), "--out", str(run), "--overwrite"
    )
    assert_one_line_error(code, err, "does not exist")
    assert (run / "trials.csv").read_text() == "trial_id\n0000\n"


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--time-budget", "soon"], "is not a duration"),
        (["--time-budget=-5m"], "is not a duration"),
        (["--max-epochs", "0"], "--max-epochs must be at least 1"),
        (["--factor", "1"], "--factor must be at least 2"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--space", "nope"], "unknown space 'nope'"),
        (["--val-size", "lots"], "neither a count nor a fraction"),
        (["--test-size", "1.5"], "must be a whole count or a fraction below 1"),
        (["--precision", "fp8"], "--precision 'fp8' is unknown"),
        (["--kernels", "turbo"], "--kernels 'turbo' is unknown"),
        (["--seed", "zero"], "invalid int value"),
        (["--workers", "many"], "--workers 'many' is neither auto nor a count"),
        (["--workers", "0"], "--workers 0 trains nowhere"),
        (["--listen", "nowhere"], "--listen 'nowhere' is not HOST:PORT"),
        (["--lease-timeout", "1s"], "--lease-timeout must be at least 2 seconds"),
        (["--model-cache-mb", "-1"], "--model-cache-mb must be 0 or more"),
    ],
)
def test_bad_flags(tmp_path: Path, capsys, flags: list[str], needle: str) -> None:
    code, err = run_cli(capsys, "search", "--data", "cifar10", "--out", str(tmp_path / "run"), *flags)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "run").exists()


def test_report_on_a_folder_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    code, err = run_cli(capsys, "report", str(tmp_path))
    assert_one_line_error(code, err, "not a HyperCNN run folder")


def test_report_on_a_run_with_a_corrupt_config(tmp_path: Path, capsys) -> None:
    (tmp_path / "config.json").write_text("{not json")
    code, err = run_cli(capsys, "report", str(tmp_path))
    assert_one_line_error(code, err, "config.json is not valid JSON")


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory) -> Path:
    """A real (tiny) exported model and its model.json."""
    import keras

    folder = tmp_path_factory.mktemp("model")
    model = keras.Sequential(
        [keras.Input((32, 32, 3), dtype="uint8"), keras.layers.Rescaling(1 / 255), keras.layers.Flatten()]
        + [keras.layers.Dense(4, activation="softmax")]
    )
    model.save(folder / "best.keras")
    (folder / "model.json").write_text(json.dumps({"classes": CLASSES[:4]}))
    return folder / "best.keras"


def test_predict_with_a_missing_model(tmp_path: Path, capsys) -> None:
    code, err = run_cli(capsys, "predict", str(tmp_path / "best.keras"), str(tmp_path))
    assert_one_line_error(code, err, "does not exist", "hypercnn finalize")


def test_predict_with_a_file_that_is_not_a_model(tmp_path: Path, capsys) -> None:
    (tmp_path / "best.keras").write_text("this is not a Keras model")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    code, err = run_cli(capsys, "predict", str(tmp_path / "best.keras"), str(tmp_path / "a.png"))
    assert_one_line_error(code, err, "cannot load model", "re-export")


def test_predict_with_a_corrupt_model_json(exported_model: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "best.keras").write_bytes(exported_model.read_bytes())
    (folder / "model.json").write_text("{")
    code, err = run_cli(capsys, "predict", str(folder / "best.keras"), str(tmp_path))
    assert_one_line_error(code, err, "model.json is not valid JSON")


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (
            lambda folder: (folder / "notes.png").write_text("not an image") and folder / "notes.png",
            "cannot decode",
        ),
        (lambda folder: (folder / "empty").mkdir() or folder / "empty", "holds no .png or .jpg images"),
        (lambda folder: folder / "missing.png", "does not exist"),
        (
            lambda folder: (
                (folder / "huge.png").write_bytes(png_header_claiming(20_000, 20_000)) and folder / "huge.png"
            ),
            "decompression bomb",
        ),
    ],
    ids=["not an image", "empty folder", "missing file", "400-megapixel header"],
)
def test_predict_on_bad_images(exported_model: Path, tmp_path: Path, capsys, make, needle: str) -> None:
    target = make(tmp_path)
    code, err = run_cli(capsys, "predict", str(exported_model), str(target))
    assert_one_line_error(code, err, needle)


def test_predict_on_good_images_still_works(exported_model: Path, tmp_path: Path, capsys) -> None:
    Image.fromarray(np.zeros((40, 20, 3), np.uint8)).save(tmp_path / "a.png")
    code, err = run_cli(capsys, "predict", str(exported_model), str(tmp_path / "a.png"))
    assert code == 0, err


@pytest.mark.slow
def test_class_names_with_html_and_math_text_render_literally(tmp_path: Path) -> None:
    """A class named `$\\x$` once crashed the report in matplotlib's math-text parser; one named
    like a script tag must not become one in the page."""
    from search import make_report, run_search
    from tests.conftest import quick_search_config

    hostile = ["$\\x$", "<script>alert(1)</script>", "a & b", "plain"]
    x, y = make_images(40, num_classes=4)
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=np.array(hostile))
    config = quick_search_config(tmp_path, tmp_path / "d.npz", max_epochs=1, space="fast")
    run_search(config)
    report = make_report(config.out)
    html = report.html.read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "$\\x$" in html and "a &amp; b" in html
