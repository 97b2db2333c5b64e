"""Every exported format runs on its own runtime, takes uint8 images and agrees with the Keras model;
predict reads every format and every kind of input."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search import SearchConfig, formats
from search.checksums import file_digest
from search.cli import main
from search.data import load_data
from search.export import FLOAT_AGREEMENT, tree_size_and_digest
from search.predict import PROGRESS_FROM, load_model

pytestmark = pytest.mark.slow

EXPORTED = [
    "best.keras",
    "saved_model",
    "model.tflite",
    "model_dynamic_range.tflite",
    "model.onnx",
]


@pytest.fixture(scope="module")
def test_split(finished_run: Path):
    return load_data(SearchConfig.load(finished_run)).splits


def test_model_json_describes_every_format_with_its_agreement_size_and_sha256(finished_run: Path) -> None:
    described = json.loads((finished_run / "model" / "model.json").read_text())["formats"]
    assert set(described) == {"keras", "saved_model", "tflite", "tflite_dynamic_range", "onnx"}
    for kind, entry in described.items():
        path = finished_run / "model" / entry["file"]
        size, digest = tree_size_and_digest(path)
        assert entry["bytes"] == size > 0 and entry["sha256"] == digest, kind
        assert entry["images"] == 40
        if kind in formats.FLOAT_FORMATS:
            assert entry["top1_agreement"] >= FLOAT_AGREEMENT and entry["max_abs_diff"] < 1e-4, kind
    assert described["keras"]["sha256"] == file_digest(finished_run / "model" / "best.keras")
    # Dynamic-range quantisation stores weights as 8-bit integers: a smaller file.
    assert described["tflite_dynamic_range"]["bytes"] < described["tflite"]["bytes"] / 2


@pytest.mark.parametrize("name", EXPORTED)
def test_each_format_agrees_with_the_keras_model_on_the_test_split(
    finished_run: Path, test_split, name: str
) -> None:
    keras_probabilities = np.load(finished_run / "report" / "predictions.npz")["probabilities"]
    predict, input_shape = formats.load_runner(finished_run / "model" / name)
    assert input_shape == (32, 32, 3)
    probabilities = predict(test_split.x_test)
    agreement = np.mean(probabilities.argmax(1) == keras_probabilities.argmax(1))
    if formats.format_of(finished_run / "model" / name) in (*formats.FLOAT_FORMATS, formats.KERAS):
        assert agreement >= FLOAT_AGREEMENT
        np.testing.assert_allclose(probabilities, keras_probabilities, atol=1e-4)
    else:
        assert agreement >= 0.9


def test_tflite_files_use_builtin_ops_only(finished_run: Path) -> None:
    """No TensorFlow select (Flex) ops: the files run on a plain TFLite runtime."""
    import tensorflow as tf

    for name in ("model.tflite", "model_dynamic_range.tflite"):
        content = (finished_run / "model" / name).read_bytes()
        report = io.StringIO()
        with contextlib.redirect_stdout(report):
            tf.lite.experimental.Analyzer.analyze(model_content=content)
        listed = report.getvalue()
        assert "CONV_2D" in listed, listed[:500]
        assert "Flex" not in listed and b"Flex" not in content


def test_the_onnx_model_needs_only_onnxruntime(finished_run: Path, test_split) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(finished_run / "model" / "model.onnx"))
    (source,) = session.get_inputs()
    assert source.type == "tensor(uint8)"
    probabilities = session.run(None, {source.name: test_split.x_test[:5]})[0]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", EXPORTED)
def test_predict_reads_every_format_and_writes_csv(
    finished_run: Path, test_split, tmp_path: Path, name: str, capsys
) -> None:
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(test_split.x_test[i]).save(folder / f"img{i}.png")
    output = tmp_path / "predictions.csv"
    assert main(["predict", str(finished_run / "model" / name), str(folder), "--output", str(output)]) == 0
    rows = list(csv.DictReader(output.open()))
    assert [Path(r["file"]).name for r in rows] == [f"img{i}.png" for i in range(5)]
    expected = load_model(finished_run / "model" / "best.keras").predict(test_split.x_test[:5])
    assert [r["class"] for r in rows] == expected


def test_predict_reads_npz_writes_json_and_shows_progress_for_many_images(
    finished_run: Path, test_split, tmp_path: Path, capsys
) -> None:
    images = np.concatenate([test_split.x_test] * (PROGRESS_FROM // len(test_split.x_test) + 1))
    np.savez(tmp_path / "batch.npz", x=images)
    assert main(["predict", str(finished_run), str(tmp_path / "batch.npz"), "--format", "json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert len(rows) == len(images) and rows[0]["file"].endswith("batch.npz[0]")
    expected = load_model(finished_run).predict(images)
    assert [r["class"] for r in rows] == expected
    assert f"{len(images)}/{len(images)}" in captured.err  # tqdm's bar, on standard error
    # A few images: no bar.
    np.savez(tmp_path / "few.npz", x=images[:3])
    assert main(["predict", str(finished_run), str(tmp_path / "few.npz")]) == 0
    assert "/3" not in capsys.readouterr().err


def test_predict_refuses_npz_images_of_the_wrong_size_in_one_line(
    finished_run: Path, tmp_path: Path, capsys
) -> None:
    np.savez(tmp_path / "small.npz", x=np.zeros((2, 16, 16, 3), np.uint8))
    assert main(["predict", str(finished_run), str(tmp_path / "small.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "16x16" in err and "32x32" in err


def test_a_model_trained_in_mixed_bfloat16_ships_in_float32_and_exports_to_every_format(
    tmp_path: Path,
) -> None:
    """A GPU, or a CPU with AVX512-BF16, trains in mixed bfloat16; TFLite and ONNX have no bfloat16
    convolutions. The shipped model computes in float32 (its weights already are) and converts."""
    import keras
    import keras_tuner as kt

    from search.export import export_other_formats
    from spaces import get_space
    from spaces.base import DataSpec
    from spaces.inference import inference_model
    from tests.spaces.colours import overlapping_colours

    spec = DataSpec(num_classes=4, train_size=64, batch_size=32)
    hp = kt.HyperParameters()
    hp.Fixed("width", 16)
    model = get_space("fast")(spec, fit_verbose=0, precision="mixed_bfloat16").build(hp)
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
    shipped = inference_model(model, flip_averaging=True)
    assert {layer.compute_dtype for layer in shipped.layers[1:]} == {"float32"}
    images, _ = overlapping_colours(16, seed=0)
    expected = shipped.predict(images, verbose=0)
    # The same function as the trained model, to bfloat16's precision.
    np.testing.assert_allclose(expected, inference_model(model, True).predict(images, verbose=0), atol=1e-6)
    np.testing.assert_allclose(expected, model.predict(images, verbose=0), atol=3e-2)
    exported = export_other_formats(shipped, tmp_path, images, expected)
    assert all("skipped" not in exported[kind] for kind in formats.FLOAT_FORMATS), exported
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # build set it; conftest resets


def shipped_gelu_model():
    """An untrained GELU model of the fast space as it ships (flip averaging), and 16 images for it."""
    import keras_tuner as kt

    from spaces import get_space
    from spaces.base import DataSpec
    from spaces.inference import inference_model
    from tests.spaces.colours import overlapping_colours

    hp = kt.HyperParameters()
    hp.Fixed("width", 16)
    hp.Fixed("activation", "gelu")
    model = get_space("fast")(DataSpec(num_classes=4, train_size=64, batch_size=32), fit_verbose=0).build(hp)
    images, _ = overlapping_colours(16, seed=0)
    return inference_model(model, flip_averaging=True), images


def test_a_gelu_model_exports_to_an_onnx_model_that_onnxruntime_runs(tmp_path: Path) -> None:
    """Keras's exact GELU on TensorFlow computes erfc, which ONNX lacks: a GELU winner of `make run`
    shipped no ONNX (onnxruntime: INVALID_GRAPH, "No Op registered for Erfc")."""
    from search.export import export_other_formats

    shipped, images = shipped_gelu_model()
    expected = shipped.predict(images, verbose=0)
    exported = export_other_formats(shipped, tmp_path, images, expected)
    assert "skipped" not in exported[formats.ONNX], exported[formats.ONNX]
    assert exported[formats.ONNX]["top1_agreement"] == 1.0


def test_an_onnx_export_that_fails_its_check_leaves_no_model_onnx_and_the_rest_ships(
    tmp_path: Path, monkeypatch
) -> None:
    """Without the erfc rewrite tf2onnx's GELU graph is one onnxruntime refuses: the real failure."""
    from search import export

    monkeypatch.setattr(export, "erfc_as_one_minus_erf", lambda path: None)
    shipped, images = shipped_gelu_model()
    exported = export.export_other_formats(shipped, tmp_path, images, shipped.predict(images, verbose=0))
    assert "skipped" in exported[formats.ONNX] and not (tmp_path / "model.onnx").exists()
    assert exported[formats.TFLITE]["top1_agreement"] == 1.0
