"""The one rule for "the best trial", used by the tuner's progress lines, the final choice, the
leaderboard and the page.

A trial is ranked when it produced a score: completed, or cut short by the time budget (ranked by
what it reached, and marked as cut). Failed and diverged trials come after every ranked trial.
Among ranked trials the better score comes first; a tie goes to the earlier trial.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from search.objective import Objective

COMPLETED = "COMPLETED"
CUT = "CUT_BY_BUDGET"
RANKED_STATUSES = (COMPLETED, CUT)


def is_ranked(status: str, score: float | None) -> bool:
    return status in RANKED_STATUSES and score is not None and math.isfinite(float(score))


def ranked_mask(trials: pd.DataFrame, score_column: str) -> list[bool]:
    """Which rows of a trials table are ranked (is_ranked, row by row)."""
    return [
        is_ranked(str(status), None if pd.isna(value) else float(value))
        for status, value in zip(trials["status"], trials[score_column], strict=True)
    ]


def rank_key(objective: Objective, status: str, score: float | None, trial_id: str) -> tuple:
    """Ascending order of this key is the leaderboard's order."""
    if not is_ranked(status, score):
        return (1, 0.0, trial_id)
    return (0, objective.sort_key(float(score)), trial_id)


def best_kerastuner_trial(trials: dict[str, Any], objective: Objective) -> Any | None:
    """The best of KerasTuner's trial objects. KerasTuner marks a budget-cut trial COMPLETED: its
    score is the best value it reached, so it competes like any other."""
    scored = [t for t in trials.values() if is_ranked(t.status, t.score)]
    return min(scored, key=lambda t: rank_key(objective, t.status, t.score, t.trial_id), default=None)


def leaderboard(trials: pd.DataFrame, objective: Objective) -> pd.DataFrame:
    """trials.csv ranked: `rank` first, `cut` marks a trial the budget stopped; unranked rows last,
    in trial order, with rank left empty."""
    if trials.empty:
        return trials.assign(rank=pd.Series(dtype="Int64"), cut=pd.Series(dtype=bool))
    score = trials["score"] if "score" in trials else trials[objective.name]
    keys = [
        rank_key(objective, str(status), None if pd.isna(value) else float(value), str(tid))
        for status, value, tid in zip(trials["status"], score, trials["trial_id"], strict=True)
    ]
    order = sorted(range(len(trials)), key=lambda i: keys[i])
    ranked = trials.iloc[order].reset_index(drop=True)
    ranked_count = sum(1 for key in keys if key[0] == 0)
    ranks = list(range(1, ranked_count + 1)) + [None] * (len(ranked) - ranked_count)
    ranked.insert(0, "rank", pd.array(ranks, dtype="Int64"))
    ranked.insert(3, "cut", ranked["status"].eq(CUT))
    return ranked
