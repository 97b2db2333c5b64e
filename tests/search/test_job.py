"""hypercnn run: one budget for search and final model, split by what the first trial measured."""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import pandas as pd
import pytest
import tensorflow as tf

from search import plan
from search.cli import main
from search.plan import BudgetPick
from spaces import register_space
from spaces.cnn import ClassicCNN

# Budgets measured in wall time: run alone (make test runs the rest two at a time).
pytestmark = [pytest.mark.slow, pytest.mark.serial]


class PausedSpace(ClassicCNN):
    """The classic CNN with a pause in every training step: a deliberately slow configuration, whose
    exported model still loads (the pause layer is registered, and does nothing at inference)."""

    description = "test only: slow steps"
    seconds_per_step = 0.0

    def build_features(self, hp, x):
        return Pause(name="pause")(super().build_features(hp, x))


@keras.saving.register_keras_serializable(package="hypercnn_tests")
class Pause(keras.layers.Layer):
    def call(self, features, training=None):
        if not training:
            return features
        delay = tf.numpy_function(lambda: time.sleep(PausedSpace.seconds_per_step) or 0.0, [], tf.float64)
        return features + tf.cast(tf.reshape(delay, []), features.dtype)


def run_flags(data: Path, out: Path, budget: str, *extra: str) -> list[str]:
    return [
        "run",
        "--data",
        str(data),
        "--out",
        str(out),
        "--val-size",
        "40",
        "--test-size",
        "40",
        "--max-epochs",
        "2",
        "--factor",
        "2",
        "--progress",
        "off",
        "--time-budget",
        budget,
        *extra,
    ]


def test_run_searches_then_reports_inside_one_budget(tmp_path: Path, tiny_npz: Path, capsys) -> None:
    started = time.time()
    # 90 s: the final model keeps 60 default epochs and 45 s for what follows them (search.plan);
    # tiny images train those in seconds, so the plan leaves time to search even on a slow machine.
    assert main(run_flags(tiny_npz, tmp_path / "run", "90s")) == 0
    elapsed = time.time() - started
    out = capsys.readouterr().out
    # The split is decided from the first trial's pace and said in one line.
    assert "min searching" in out and "min for the final model" in out
    assert (tmp_path / "run" / "report" / "index.html").is_file()
    metrics = json.loads((tmp_path / "run" / "report" / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert len(trials) > 1  # tiny images train fast: the plan leaves time to search
    assert elapsed < 90 * 1.1, elapsed


class PausedSpaceWithPick(PausedSpace):
    """The slow space with a budget pick for every budget: what the bench found for the fast space."""

    budget_picks = (BudgetPick("two-blocks", {"conv_blocks": 2, "dense_units": 64}, 1, 10_000),)


def test_a_budget_too_small_for_the_final_training_searches_nothing_but_its_budget_pick(
    tmp_path: Path, tiny_npz: Path, capsys, monkeypatch
) -> None:
    # Deliberately slow steps: 200 train+validation images in batches of 8 at 0.08 s a step are 2 s per
    # epoch, so the final training's 60 epochs alone (120 s) and what follows them (45 s reserved) need
    # more than the 75 s budget; what is left after the first trial fits several epochs even on a
    # loaded machine (at 60 s a CI machine's slower first trial left time for 1 epoch).
    register_space("paused-test-space")(PausedSpaceWithPick)
    PausedSpace.seconds_per_step = 0.08
    # Whatever its one epoch on 160 tiny images scored: the wiring is under test here, the tolerance in
    # test_plan.py.
    monkeypatch.setattr(plan, "BUDGET_PICK_TOLERANCE", 1.0)
    flags = run_flags(tiny_npz, tmp_path / "run", "75s", "--space", "paused-test-space", "--batch-size", "8")
    # Hyperband's 9/3 brackets: 10 new trials before one reaches the guard's 3 epochs (the plan asks
    # the oracle for its bracket sizes).
    flags += ["--max-epochs", "9", "--factor", "3"]
    try:
        assert main(flags) == 0
    finally:
        PausedSpace.seconds_per_step = 0.0
    out = capsys.readouterr().out
    assert "no search beyond its first trial" in out and "'two-blocks'" in out
    trials = pd.read_csv(tmp_path / "run" / "trials.csv", dtype={"trial_id": str})
    # The default (which measured the pace), then the pick, and nothing else.
    assert trials["proposal"].tolist() == ["default", "budget"]
    assert trials.loc[1, "conv_blocks"] == 2 and trials.loc[1, "dense_units"] == 64
    metrics = json.loads((tmp_path / "run" / "report" / "metrics.json").read_text())
    # The final model is the pick, trained for what the rest of the budget fits (more than the 1
    # epoch its trial had).
    assert metrics["best_trial"] == trials.loc[1, "trial_id"] and metrics["retrain_epochs"] > 1
    # The report says why: the pick, by name, whatever its one short trial scored.
    assert "budget pick" in metrics["chosen_because"] and "'two-blocks'" in metrics["chosen_because"]
    job = json.loads((tmp_path / "run" / "job.json").read_text())
    assert job["plan"]["pick"] == "two-blocks" and job["plan"]["trials_needed"] == 10
    # The picks' costs are read at the precision the job trains in (mixed bfloat16 where the CPU has
    # AVX512-BF16, else float32) and, in float32, the vector width oneDNN runs it at.
    from search.hardware import cost_key

    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert job["plan"]["cost_key"] == env["hardware"]["cost_key"]
    assert env["hardware"]["cost_key"] == cost_key(env["hardware"]["precision"], on_gpu=False)


def test_the_budget_belongs_to_the_run_and_a_resumed_job_continues_it(tmp_path: Path) -> None:
    """job.json adds up what every invocation spent; a resumed job starts its clock that far back."""
    from search.ledger import BudgetLedger
    from search.runfolder import RunFolder

    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    with BudgetLedger(run, 300.0, fresh=False) as first:
        run.write_format()  # what run_search writes once the folder is ready
        time.sleep(0.3)
    spent_first = json.loads(run.job_json.read_text())["spent_s"]
    assert spent_first >= 0.3 and first.spent_s() == pytest.approx(spent_first, abs=0.2)
    # A killed invocation leaves what the ledger last wrote: pretend it had run 100 s.
    ledger = json.loads(run.job_json.read_text())
    ledger["invocations"][0]["seconds"] = 100.0
    run.job_json.write_text(json.dumps(ledger))
    resumed = BudgetLedger(run, 300.0, fresh=False)
    assert resumed.spent_before == 100.0
    assert resumed.job_started == pytest.approx(time.time() - 100.0, abs=1.0)
    with resumed:
        run.write_format()
    written = json.loads(run.job_json.read_text())
    assert len(written["invocations"]) == 2 and written["spent_s"] >= 100.0
    # --overwrite starts the budget afresh.
    assert BudgetLedger(run, 300.0, fresh=True).spent_before == 0.0


def test_a_run_whose_budget_is_spent_says_so_in_one_line(tmp_path: Path, tiny_npz: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "job.json").write_text(json.dumps({"time_budget_s": 60, "invocations": [{"seconds": 61.0}]}))
    assert main(run_flags(tiny_npz, out, "60s")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "spent its whole budget" in err and "--time-budget" in err


def test_a_finished_run_invoked_again_shows_its_report(tmp_path: Path, tiny_npz: Path, capsys) -> None:
    """`make run` twice: the second shows the finished job instead of failing on a spent budget."""
    out = tmp_path / "run"
    (out / "report").mkdir(parents=True)
    (out / "report" / "index.html").write_text("<html></html>")
    (out / "report" / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5, "best_trial": "0000"}))
    job = {"time_budget_s": 60, "invocations": [{"seconds": 55.0}], "completed": True}
    (out / "job.json").write_text(json.dumps(job))
    # 55 s of 60 spent, but the job is complete: the same budget starts nothing (a retrain in the 5 s
    # left would replace the good model with a worse one).
    assert main(run_flags(tiny_npz, out, "60s")) == 0
    assert "already finished" in capsys.readouterr().out
