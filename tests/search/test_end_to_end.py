"""The CLI the way the README runs it: search -> report -> predict, on a few hundred generated images."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from search import SearchConfig, load_model
from search.data import load_data
from tests.cli import copy_run, hypercnn

pytestmark = pytest.mark.slow


SECTIONS = (
    "summary",
    "leaderboard",
    "hyperband",
    "importance",
    "curves",
    "confusion",
    "per-class",
    "mistakes",
    "samples",
    "model",
)


def test_search_writes_the_run_folder_contract(finished_run: Path) -> None:
    config = json.loads((finished_run / "config.json").read_text())
    assert config["max_epochs"] == 2 and config["space"] == "cnn"
    env = json.loads((finished_run / "env.json").read_text())
    assert env["data"]["split_sizes"] == {"train": 160, "validation": 40, "test": 40}
    assert len(env["data"]["sha256"]) == 64 and env["packages"]["keras-tuner"]
    trials = pd.read_csv(finished_run / "trials.csv", dtype={"trial_id": str})
    assert {
        "trial_id",
        "status",
        "epochs",
        "val_accuracy",
        "val_loss",
        "seconds",
        "overhead_seconds",
        "sgd_nesterov_learning_rate",
    } <= set(trials.columns)
    assert (trials["status"] == "COMPLETED").sum() >= 3
    # Where a trial's seconds went: steady steps + validation + overhead = its wall time.
    record = json.loads((finished_run / "tuner" / "trial_0000" / "hypercnn.json").read_text())
    assert record["train_seconds"] > 0 and record["validation_seconds"] > 0 and record["trace_seconds"] > 0
    assert record["train_steps"] == record["epochs_trained"] * 2  # 160 images in batches of 128
    total = record["train_seconds"] + record["validation_seconds"] + record["overhead_seconds"]
    assert total == pytest.approx(record["seconds"], abs=0.05)
    # Every trial trains in the precision the run chose (KerasTuner's per-trial clear_session
    # resets Keras's global dtype policy; the space re-applies it).
    for trial_id in trials["trial_id"]:
        trial_file = finished_run / "tuner" / f"trial_{trial_id}" / "hypercnn.json"
        assert json.loads(trial_file.read_text())["precision"] == env["hardware"]["precision"]
    # The first trial is the space's defaults, the known-good configuration.
    assert trials.loc[0, "conv_blocks"] == 3 and trials.loc[0, "sgd_nesterov_learning_rate"] == pytest.approx(
        0.1
    )


def test_report_has_every_section_and_is_self_contained(finished_run: Path) -> None:
    html = (finished_run / "report" / "index.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    # Figures: hyperband, curves, confusion, samples, and importance with its effects where 6 trials
    # are ranked; plus one small image per confident mistake.
    mistakes = len(np.load(finished_run / "report" / "gallery.npz")["mistake_indices"])
    figures = 6 if 'alt="hyper-parameter importance"' in html else 4
    assert html.count("data:image/png;base64,") == figures + mistakes
    assert "http://" not in html and "https://" not in html
    metrics = json.loads((finished_run / "report" / "metrics.json").read_text())
    confusion = np.array(metrics["confusion_matrix"])
    assert confusion.shape == (4, 4) and confusion.sum() == metrics["test_images"] == 40
    # The reported accuracy is the confusion matrix's, and the tiny data is learnable (chance: 0.25).
    assert metrics["test_accuracy"] == np.trace(confusion) / 40
    assert metrics["test_accuracy"] >= 0.5, metrics["test_accuracy"]
    html_accuracy = f"{100 * metrics['test_accuracy']:.2f}"
    assert html_accuracy in html
    board = pd.read_csv(finished_run / "report" / "leaderboard.csv", dtype={"trial_id": str})
    # One rule: the leaderboard's first row is the trial the search ranked best.
    assert board.loc[0, "trial_id"] == metrics["top_trial"]


def test_reloaded_model_predicts_exactly_what_the_trained_one_did(finished_run: Path) -> None:
    described = json.loads((finished_run / "model" / "model.json").read_text())
    assert described["reload_check"]["same_classes"] is True
    assert described["reload_check"]["max_abs_diff"] <= 1e-5
    classifier = load_model(finished_run / "model" / "best.keras")
    # Batch norm's statistics were recomputed after the final training, on all 200 train+validation
    # images; the cnn space searches whether to use batch norm at all, and a winner without it has none.
    from spaces.batch_stats import model_layers

    shipped = keras.models.load_model(finished_run / "model" / "best.keras")
    has_batch_norm = any(
        isinstance(layer, keras.layers.BatchNormalization) for layer in model_layers(shipped)
    )
    assert described["batch_norm_images"] == (200 if has_batch_norm else 0)
    splits = load_data(SearchConfig.load(finished_run)).splits
    accuracy = float((classifier.predict_proba(splits.x_test).argmax(1) == splits.y_test).mean())
    metrics = json.loads((finished_run / "report" / "metrics.json").read_text())
    assert accuracy == metrics["test_accuracy"]
    assert classifier.classes == described["classes"] == ["airplane", "automobile", "bird", "cat"]
    # Flip averaging is on by default, for winners that trained with flips.
    assert described["flip_averaged"] is described["hyperparameters"]["augment_flip"]
    if described["flip_averaged"]:
        mirrored = classifier.predict_proba(splits.x_test[:, :, ::-1])
        np.testing.assert_allclose(mirrored, classifier.predict_proba(splits.x_test), atol=1e-5)


def test_predict_classifies_png_files_and_folders(finished_run: Path, tmp_path: Path) -> None:
    splits = load_data(SearchConfig.load(finished_run)).splits
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(splits.x_test[i]).save(folder / f"img{i}.png")
    model = str(finished_run / "model" / "best.keras")
    result = hypercnn("predict", model, str(folder), "--json")
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [Path(r["file"]).name for r in rows] == [f"img{i}.png" for i in range(6)]
    expected = load_model(model).predict(splits.x_test[:6])
    assert [r["class"] for r in rows] == expected
    assert all(0.0 < r["probability"] <= 1.0 for r in rows)
    plain = hypercnn("predict", model, str(folder / "img0.png"))
    header, row = plain.stdout.strip().splitlines()
    assert header == "file,class,probability" and row.split(",")[1] == expected[0]


def test_finalize_again_reuses_the_exported_model(finished_run: Path, tmp_path: Path) -> None:
    run = copy_run(finished_run, tmp_path / "copy")
    before = (run / "model" / "model.json").read_text()
    again = hypercnn("finalize", str(run))
    assert "reusing" in again.stdout
    assert (run / "model" / "model.json").read_text() == before


def test_report_on_a_finalized_run_only_renders(finished_run: Path, tmp_path: Path) -> None:
    run = copy_run(finished_run, tmp_path / "copy")
    (run / "report" / "index.html").unlink()
    again = hypercnn("report", str(run))
    assert "retraining" not in again.stdout and "test accuracy" not in again.stdout
    assert (run / "report" / "index.html").is_file()


def test_python_api_matches_the_cli(finished_run: Path, tmp_path: Path) -> None:
    """load_model(run folder).predict_files gives what `hypercnn predict RUN` prints, file by file."""
    splits = load_data(SearchConfig.load(finished_run)).splits
    for i in range(8):
        Image.fromarray(splits.x_test[i]).save(tmp_path / f"img{i}.png")
    printed = [
        json.loads(line)
        for line in hypercnn("predict", str(finished_run), str(tmp_path), "--json").stdout.splitlines()
    ]
    api = load_model(finished_run).predict_files([tmp_path])
    assert [Path(row["file"]).name for row in printed] == [Path(p.file).name for p in api]
    assert [row["class"] for row in printed] == [p.label for p in api]
    np.testing.assert_allclose(
        [row["probability"] for row in printed], [p.probability for p in api], atol=1e-6
    )
