"""The page renders from the run folder alone: no data, no tuner state, no TensorFlow; strings from the
data show as text; one ranking rule; run-folder versions; compare."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from search.cli import main
from search.objective import get_objective
from search.ranking import leaderboard
from search.runfolder import RUN_FORMAT
from tests.cli import copy_run, hypercnn

pytestmark = pytest.mark.slow

HOSTILE_CLASSES = ["<script>alert(1)</script>", "$\\x$", "a & b", "cat"]


def detached_copy(finished_run: Path, target: Path) -> Path:
    """The run as a colleague receives it: no tuner/ state (checkpoints), and its data gone."""
    run = copy_run(finished_run, target)
    shutil.rmtree(run / "tuner")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "data": str(target / "gone.npz")}))
    return run


def test_a_copied_run_renders_without_data_tuner_state_or_tensorflow(
    finished_run: Path, tmp_path: Path
) -> None:
    run = detached_copy(finished_run, tmp_path / "copied")
    (run / "report" / "index.html").unlink()
    probe = (
        "import sys; from search.cli import main; code = main(['report', sys.argv[1]]); "
        "heavy = [m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules]; "
        "print('imported:', heavy); sys.exit(code or bool(heavy))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(run)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "imported: []" in done.stdout
    html = (run / "report" / "index.html").read_text()
    assert json.loads((run / "report" / "metrics.json").read_text())["best_trial"] in html


def test_strings_from_the_data_render_as_text(finished_run: Path, tmp_path: Path) -> None:
    run = detached_copy(finished_run, tmp_path / "hostile")
    env = json.loads((run / "env.json").read_text())
    env["data"]["classes"] = HOSTILE_CLASSES
    (run / "env.json").write_text(json.dumps(env))
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    old_names = list(metrics["per_class"])
    metrics["per_class"] = {
        new: metrics["per_class"][old] for old, new in zip(old_names, HOSTILE_CLASSES, strict=True)
    }
    (run / "report" / "metrics.json").write_text(json.dumps(metrics))
    # A `$...$` pair would be parsed as math by matplotlib (and `$\x$` fails to parse): rendering
    # succeeds only if the figures show it literally.
    assert main(["report", str(run)]) == 0
    html = (run / "report" / "index.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a &amp; b" in html and "$\\x$" in html


def test_a_cut_trial_is_ranked_by_what_it_reached_and_failed_ones_come_last() -> None:
    trials = pd.DataFrame(
        {
            "trial_id": ["0000", "0001", "0002", "0003"],
            "status": ["COMPLETED", "FAILED", "CUT_BY_BUDGET", "COMPLETED"],
            "score": [0.61, None, 0.74, 0.61],
            "val_accuracy": [0.61, None, 0.74, 0.61],
        }
    )
    board = leaderboard(trials, get_objective("val_accuracy"))
    assert list(board["trial_id"]) == ["0002", "0000", "0003", "0001"]
    assert list(board["rank"].astype("object").where(board["rank"].notna(), None)) == [1, 2, 3, None]
    assert list(board["cut"]) == [True, False, False, False]
    # For a loss, lower is better.
    by_loss = leaderboard(trials.assign(score=[0.9, None, 1.2, 0.5]), get_objective("val_loss"))
    assert list(by_loss["trial_id"]) == ["0003", "0000", "0002", "0001"]


def test_the_tuner_the_final_choice_and_the_leaderboard_share_one_rule(finished_run: Path) -> None:
    metrics = json.loads((finished_run / "report" / "metrics.json").read_text())
    board = pd.read_csv(finished_run / "report" / "leaderboard.csv", dtype={"trial_id": str})
    trials = pd.read_csv(finished_run / "trials.csv", dtype={"trial_id": str})
    again = leaderboard(trials, get_objective("val_accuracy"))
    assert list(again["trial_id"]) == list(board["trial_id"])
    assert metrics["top_trial"] == board.loc[0, "trial_id"]


def test_a_run_folder_from_a_newer_hypercnn_is_refused_in_one_line(
    finished_run: Path, tmp_path: Path, capsys
) -> None:
    run = copy_run(finished_run, tmp_path / "newer")
    (run / "run.json").write_text(json.dumps({"format": RUN_FORMAT + 1}))
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "newer HyperCNN" in err and "upgrade" in err


def test_an_earlier_run_folder_without_finalized_files_is_told_to_finalize(
    finished_run: Path, tmp_path: Path, capsys
) -> None:
    run = detached_copy(finished_run, tmp_path / "v1")
    (run / "run.json").unlink()  # format 1: written before run.json existed
    for name in ("metrics.json", "predictions.npz", "gallery.npz", "search_history.json"):
        (run / "report" / name).unlink()
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gone.npz" in err


def test_an_earlier_run_folder_resumes_and_rerenders(finished_run: Path, tmp_path: Path) -> None:
    """A format-1 folder (no run.json, report files of the old layout) is finalized again where its
    data is, and then renders; the folder is upgraded to the current format."""
    run = copy_run(finished_run, tmp_path / "v1-with-data")
    (run / "run.json").unlink()
    (run / "report" / "metrics.json").unlink()
    # Format 1 exported best.keras alone.
    described = json.loads((run / "model" / "model.json").read_text())
    described.pop("formats")
    (run / "model" / "model.json").write_text(json.dumps(described))
    shutil.rmtree(run / "model" / "saved_model")
    for name in ("model.tflite", "model_dynamic_range.tflite", "model.onnx"):
        (run / "model" / name).unlink()
    result = hypercnn("report", str(run))
    assert "test accuracy" in result.stdout and "report:" in result.stdout
    assert json.loads((run / "run.json").read_text())["format"] == RUN_FORMAT
    assert (run / "model" / "model.onnx").is_file()
    assert set(json.loads((run / "model" / "model.json").read_text())["formats"]) >= {"keras", "onnx"}


def test_compare_puts_runs_side_by_side(finished_run: Path, tmp_path: Path) -> None:
    first = detached_copy(finished_run, tmp_path / "first-run")
    second = detached_copy(finished_run, tmp_path / "second-run")
    page = tmp_path / "compare.html"
    assert main(["compare", str(first), str(second), "--out", str(page)]) == 0
    html = page.read_text()
    assert "first-run" in html and "second-run" in html
    accuracy = json.loads((first / "report" / "metrics.json").read_text())["test_accuracy"]
    assert html.count(f"{100 * accuracy:.2f}%") >= 2
    assert "https://" not in html and "http://" not in html
