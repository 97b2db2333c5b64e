"""--objective: what trials are ranked by, in the oracle, the leaderboard and the choice of winner."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from search import SearchConfig, run_search
from search.errors import HyperCNNError
from tests.conftest import quick_search_config


def test_an_unknown_objective_is_one_line_naming_the_choices() -> None:
    with pytest.raises(
        HyperCNNError, match="--objective 'f1' is unknown; use val_accuracy, val_macro_f1, val_loss"
    ):
        SearchConfig.create(objective="f1")


@pytest.mark.parametrize("objective", ["val_macro_f1", "val_loss"])
def test_trials_are_scored_and_ranked_by_the_objective(
    tmp_path: Path, tiny_npz: Path, objective: str
) -> None:
    result = run_search(quick_search_config(tmp_path, tiny_npz, objective=objective))
    trials = pd.read_csv(tmp_path / "run" / "trials.csv", dtype={"trial_id": str})
    assert objective in trials.columns and "val_accuracy" in trials.columns
    for trial_id in trials["trial_id"]:
        record = json.loads((tmp_path / "run" / "tuner" / f"trial_{trial_id}" / "hypercnn.json").read_text())
        stored = json.loads((tmp_path / "run" / "tuner" / f"trial_{trial_id}" / "trial.json").read_text())
        history = record["history"][objective]
        best = max(history) if objective == "val_macro_f1" else min(history)
        # KerasTuner's score is the objective's best epoch, and the record's best epoch is that epoch.
        assert stored["score"] == pytest.approx(best)
        assert history[record["history"]["epoch"].index(record["best_epoch"])] == pytest.approx(best)
    scores = trials.set_index("trial_id")[objective]
    winner = scores.idxmax() if objective == "val_macro_f1" else scores.idxmin()
    assert result.best_trial == winner
