"""One time budget for a whole job: how much of it to spend searching, and which trial to train last.

The final training is where test accuracy is made: the default configuration trained for the whole
budget beat a 40 % search on 2 CPU cores at 15 minutes (81.3 % against 72.6 %) and at 30 minutes
(81.9 % against 80.2 %). So the search only gets the time the final training can spare, measured from
the first trial's pace, and the winner is the trial expected to score best after the final training
the remaining time allows among those it gives enough epochs, not the best short trial.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping
from typing import Any

# At most this share of the job searches (the bench's earlier fixed split).
MAX_SEARCH_SHARE = 0.4
# A search that has time for fewer new trials than this (each costed like the first) is none: on 2
# AVX512-BF16 cores at 300 s a pace 2 % faster than the other seeds' let the plan "search" for 0.2
# min, in which one trial ran 4 s and was cut by the budget, and the final model lost its budget pick.
MIN_SEARCH_TRIALS = 3
# Epochs over train+validation the final model should get before any time goes to searching. Measured
# on 2 AVX2 cores (bench/search_quality.py at e5f14a2, 10,000 + 2,000 images, 10,000 test images):
# the default trained 38 epochs in 30 minutes scored 81.9 %; with 30 kept, a 39 % search left its
# 2x-costlier winner 12 epochs and 80.2 %. A ranking of 1-to-3-epoch trials does not win back what
# the search takes from a final training of 30-odd epochs, so searching starts at twice that. Where
# it does (2 AVX512-BF16 cores, 900 s, bench/search_quality.py at 0d169da): 6 minutes of search, and
# its winner (twice the default's cost per epoch) retrained 42 epochs scored 83.41 % against 81.90 %
# for the default trained 161 epochs (results/bench_search_quality_bf16.csv).
FINAL_EPOCHS_WANTED = 60
# The final training must fit a trial this many epochs for it to be chosen (at its own pace, in the
# time left): a costlier configuration that would get fewer is trained only when none fits them.
MIN_FINAL_EPOCHS = 30
# Validation accuracy gained per e-fold more epochs, where the search measured none itself (a promoted
# trial and its parent give the measured one).
DEFAULT_GAIN_PER_LOG_EPOCH = 0.05
# Upward extrapolation stops at this many times the epochs a trial was scored at (one Hyperband rung).
MAX_EXTRAPOLATION = 3.0
# Test pass, exports with their checks, and the page after the final training (seconds).
AFTER_FINAL_TRAINING_S = 45.0
# A budget pick whose one-epoch trial scored this far below the default's is not trusted: the bench's
# evidence (CIFAR-10) does not hold on this data, and the default is trained instead.
BUDGET_PICK_TOLERANCE = 0.05
# A trial leaves the default only if its validation accuracy beat the default's at equal epochs by
# more than this many standard errors of their difference (one-sided 95 %). Short trials are noisy:
# at 900 s (2 AVX512-BF16 cores, bench/search_quality.py at 67a9cd4, model sampler, seed 2) a width-24
# trial that led the default's first epoch by 2.4 points on 2,000 images (noise: 1.6 points) was
# chosen on a 0.5-point lead at 3 epochs and ended 1.4 points below the default trained alone.
DEFAULT_MARGIN_Z = 1.645
# ... and only once it was promoted to this many epochs (Hyperband's second rung at the default 9/3
# brackets): after one epoch, configurations that start fast lead the default and then trail it. The
# warm start's width-24 GELU AdamW entry led the default's first epoch in all 20 stored 900 s runs (by
# 0.8 to 5.5 points; 2 AVX512-BF16 cores, and in float32 the same cores with ONEDNN_MAX_CPU_ISA=AVX2),
# and both times it was trained it ended below the default trained alone: 80.51 % against 81.93 %
# (67a9cd4, bfloat16, 36 epochs) and 80.98 % against 81.83 % (a0d41c6, float32, where a 1-minute
# search scored only first epochs and it trained 81).
GUARD_MIN_EPOCHS = 3


def base_precision(cost_key: str) -> str:
    """The precision of a cost key: 'float32' of 'float32/avx2' (search.hardware.cost_key)."""
    return cost_key.split("/", 1)[0]


@dataclasses.dataclass(frozen=True)
class BudgetPick:
    """A configuration that beat the space's default on validation, at equal training time, when the
    final training fits between `min_epochs` and `max_epochs` of its own epochs (bench/portfolio.py,
    results/bench_portfolio*.csv): where nothing is searched, it is trained instead. Counted in its own
    epochs, not the default's, because what it costs per epoch over the default depends on the
    precision and the CPU's vector width: the width-48 GELU pick costs 3.2 times the default's epoch in
    mixed bfloat16 and 2.4 times in float32, so the same minutes give it a third more epochs in float32.

    Costs and where it may be trained (led_at) are keyed by search.hardware.cost_key: a precision
    ('mixed_bfloat16', 'float32') or a precision with the vector width ('float32/avx2'); a key with
    the width that is not listed falls back to its precision's entry."""

    name: str
    values: dict[str, Any]
    min_epochs: float
    max_epochs: float = math.inf
    # Its seconds per epoch over the default's by cost key (bench/portfolio.py's cost_vs_default).
    costs: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # The cost keys it led the default at; at any other it is never picked (None: at every one). A
    # narrow net's cost depends on the kernels: width 24 took 0.59 of the default's epoch in float32
    # with AVX2 and 1.41 in mixed bfloat16, where it trailed the default by 2.6 points.
    led_at: frozenset[str] | None = None

    def cost(self, cost_key: str) -> float:
        """Its measured cost at `cost_key` (else at its precision); where none was measured, the
        largest (fewer epochs fit, so an unmeasured key never makes a costly pick look affordable), or
        the default's 1."""
        for key in (cost_key, base_precision(cost_key)):
            if key in self.costs:
                return self.costs[key]
        return max(self.costs.values(), default=1.0)

    def epochs_that_fit(self, default_epochs: float, cost_key: str) -> float:
        return default_epochs / self.cost(cost_key)

    def fits(self, default_epochs: float, cost_key: str) -> bool:
        """Whether it was measured to lead at `cost_key` (or at its precision) and the time of
        `default_epochs` of the default gives it a number of its own epochs inside its measured range."""
        if self.led_at is not None and not {cost_key, base_precision(cost_key)} & self.led_at:
            return False
        return self.min_epochs <= self.epochs_that_fit(default_epochs, cost_key) <= self.max_epochs


def budget_pick(
    picks: tuple[BudgetPick, ...], default_epochs: float, cost_key: str = "float32"
) -> BudgetPick | None:
    """The first pick measured at `cost_key` whose range holds the epochs of its own that the time
    of `default_epochs` of the default fits there (BudgetPick.fits; outside every range: None)."""
    return next((p for p in picks if p.fits(default_epochs, cost_key)), None)


@dataclasses.dataclass(frozen=True)
class BudgetPlan:
    total_s: float
    search_s: float
    final_s: float
    reason: str
    # Where nothing is searched: the space's configuration trained instead of the default (BudgetPick).
    pick: str | None = None
    # New trials the search had to have time for, or it was none (trials_before_guard).
    trials_needed: float = MIN_SEARCH_TRIALS
    # The cost key of the machine and precision the job trains in (search.hardware.cost_key): the
    # budget picks' costs and ranges were read at it.
    cost_key: str = "float32"

    def describe(self) -> str:
        return (
            f"budget {self.total_s / 60:.1f} min: {self.search_s / 60:.1f} min searching, "
            f"{self.final_s / 60:.1f} min for the final model ({self.reason})"
        )


def trials_before_guard(first_bracket: list[tuple[int, int]], guard: int) -> float:
    """New trials, each costed like the first (the default's), that Hyperband trains before any
    configuration has `guard` epochs, given its first bracket's rounds as (trials, epochs): it fills
    the first round, then promotes the round's best trial, which continues from its checkpoint. Until
    then the final model can only be the default (beats_default), so a search shorter than this is
    none and the budget pick is trained instead. Hyperband's 9 epochs, factor 3: 9 one-epoch trials,
    then 2 more epochs of the best: 10. Measured in float32 (2 AVX512-BF16 cores with
    ONEDNN_MAX_CPU_ISA=AVX2, 900 s, e953450, seed 0): 1.3 min of search scored only the warm start's
    first epochs and the default was trained (82.07 %); in seed 1 the plan searched nothing and its
    budget pick 'w48-gelu' scored 83.66 % (default_only: 82.55 %)."""
    trials, first_epochs = first_bracket[0]
    epochs_trained, reached = trials * first_epochs, first_epochs
    for _, epochs in first_bracket[1:]:
        if reached >= guard:
            break
        epochs_trained, reached = epochs_trained + epochs - reached, epochs
    # The default's first trial has run already (the plan is made from its pace).
    return epochs_trained / first_epochs - 1


def plan_budget(
    total_s: float,
    final_epoch_s: float,
    spent_s: float,
    max_share: float = MAX_SEARCH_SHARE,
    picks: tuple[BudgetPick, ...] = (),
    pick_trial_s: float = 0.0,
    trial_s: float = 0.0,
    trials_needed: float = MIN_SEARCH_TRIALS,
    cost_key: str = "float32",
) -> BudgetPlan:
    """Split `total_s` given the default's measured seconds per epoch on train+validation and the
    seconds already spent (loading, the first trial). Searching gets only what is left after the final
    training's FINAL_EPOCHS_WANTED epochs, and never more than MAX_SEARCH_SHARE of the budget. Where
    that leaves nothing to search, or time for fewer than `trials_needed` (trials_before_guard, at
    least MIN_SEARCH_TRIALS) new trials of `trial_s` (the first trial's seconds), the space's budget
    pick for the epochs that fit (if any, at `cost_key`) gets one trial of `pick_trial_s` (a trial of
    the default's cost) times its own cost, and the final training is its."""
    wanted_final = FINAL_EPOCHS_WANTED * final_epoch_s + AFTER_FINAL_TRAINING_S
    search_s = min(max_share * total_s, total_s - wanted_final)
    trials_needed = max(MIN_SEARCH_TRIALS, trials_needed)
    if max_share <= 0:
        return BudgetPlan(
            total_s, spent_s, total_s - spent_s, "searching turned off: the default only", None, 0, cost_key
        )
    if search_s <= spent_s + trials_needed * trial_s:
        fits = max(0, int((total_s - spent_s - AFTER_FINAL_TRAINING_S) / final_epoch_s))
        if search_s <= spent_s:
            why = f"fewer than the {FINAL_EPOCHS_WANTED} it needs"
        else:
            why = (
                f"and the time beyond the {FINAL_EPOCHS_WANTED} it needs fits fewer than the "
                f"{trials_needed:g} trials a search needs before one can leave the default"
            )
        reason = (
            f"the whole budget fits about {fits} epochs of the default ({final_epoch_s:.0f} s each), "
            f"{why}, so no search beyond its first trial"
        )
        pick = budget_pick(picks, fits, cost_key)
        if pick is None:
            return BudgetPlan(total_s, spent_s, total_s - spent_s, reason, None, trials_needed, cost_key)
        cost, epochs = pick.cost(cost_key), pick.epochs_that_fit(fits, cost_key)
        reason += (
            f"; at that budget '{pick.name}' ({epochs:.0f} epochs at {cost:g}x the default's cost "
            f"per epoch in {cost_key}) trained better than the default on the portfolio bench, so one "
            "trial checks it learns here and the final model is its"
        )
        search_s = spent_s + pick_trial_s * cost
        return BudgetPlan(total_s, search_s, total_s - search_s, reason, pick.name, trials_needed, cost_key)
    reason = (
        f"the default needs about {wanted_final / 60:.1f} min for {FINAL_EPOCHS_WANTED} epochs "
        f"({final_epoch_s:.0f} s each); the search gets the rest, at most {max_share:.0%}"
    )
    return BudgetPlan(total_s, search_s, total_s - search_s, reason, None, trials_needed, cost_key)


def seconds_per_image(record: dict[str, Any], batch_size: int) -> float | None:
    """A trial's steady training pace from its record (None if it ran no timed step). Counted in
    optimizer steps, so a trial cut by the budget part-way through an epoch counts right."""
    steps = record.get("train_steps") or 0
    seconds = record.get("train_seconds") or 0.0
    if steps <= 0 or seconds <= 0:
        return None
    return seconds / (steps * batch_size)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One finished trial as the final training would see it."""

    trial_id: str
    score: float  # the objective, oriented so that higher is better
    epochs: int  # epochs it was trained for when scored
    seconds_per_image: float
    parent: str | None = None
    # The plan's budget pick (BudgetPlan.pick): trained last unless its trial scored far below the rest.
    budget_pick: bool = False
    # The space's default configuration (the warm start's first trial), or a promotion of it.
    default: bool = False
    # Validation accuracy when scored (a share of the validation images): what the default guard
    # weighs, whatever the objective, because its noise is known. None: no guard for this trial.
    accuracy: float | None = None


def gain_per_log_epoch(candidates: list[Candidate]) -> float:
    """Score gained per e-fold more epochs, from promoted trials and their parents (the same
    configuration trained longer); DEFAULT_GAIN_PER_LOG_EPOCH where no promotion finished."""
    by_id = {c.trial_id: c for c in candidates}
    slopes = []
    for child in candidates:
        parent = by_id.get(child.parent or "")
        if parent is not None and child.epochs > parent.epochs:
            slopes.append((child.score - parent.score) / math.log(child.epochs / parent.epochs))
    if not slopes:
        return DEFAULT_GAIN_PER_LOG_EPOCH
    # Clipped: a noisy pair must neither reward nor forbid long trainings outright.
    return min(0.15, max(0.0, statistics.median(slopes)))


def final_epochs_that_fit(candidate: Candidate, final_s: float, final_images: int) -> float:
    return final_s / (candidate.seconds_per_image * final_images)


def expected_final_score(candidate: Candidate, final_s: float, final_images: int, gain: float) -> float:
    """The candidate's score extrapolated to the epochs its pace fits into `final_s` on `final_images`.
    Fewer epochs than it was scored at cost at least DEFAULT_GAIN_PER_LOG_EPOCH per e-fold, however
    flat the measured gain: an undertrained network surely loses; a longer training only may gain,
    and is credited for at most MAX_EXTRAPOLATION times the epochs it was scored at."""
    epochs_that_fit = final_epochs_that_fit(candidate, final_s, final_images)
    ratio = max(epochs_that_fit, 1e-3) / candidate.epochs
    if ratio < 1:
        return candidate.score + max(gain, DEFAULT_GAIN_PER_LOG_EPOCH) * math.log(ratio)
    # Learning curves flatten: extrapolated without a limit, a 1-epoch trial's gain to 30 epochs
    # outran a 9-epoch trial that had beaten it at every shared epoch count.
    return candidate.score + gain * math.log(min(ratio, MAX_EXTRAPOLATION))


def configuration_of(candidate: Candidate, by_id: dict[str, Candidate]) -> str:
    """The first trial of the candidate's configuration (Hyperband's promotions continue a parent)."""
    seen = {candidate.trial_id}
    while candidate.parent in by_id and candidate.parent not in seen:
        candidate = by_id[candidate.parent]
        seen.add(candidate.trial_id)
    return candidate.trial_id


def _accuracy_at(rungs: list[Candidate], epochs: int, gain: float) -> float:
    """The accuracy a configuration's `rungs` (each with an accuracy) reached at `epochs`: measured
    where a rung was scored there, else moved from the nearest rung along `gain` per e-fold of epochs."""
    at = [r.accuracy for r in rungs if r.epochs == epochs]
    if at:
        return max(at)
    nearest = min(rungs, key=lambda r: (abs(math.log(epochs / r.epochs)), -r.epochs))
    return min(1.0, max(0.0, nearest.accuracy + gain * math.log(epochs / nearest.epochs)))


def guard_epochs(max_epochs: int) -> int:
    """The epochs a configuration must have been trained in the search to leave the default, for a
    search whose longest trials get `max_epochs`: GUARD_MIN_EPOCHS, or `max_epochs` where fewer."""
    return max(1, min(GUARD_MIN_EPOCHS, max_epochs))


@dataclasses.dataclass(frozen=True)
class DefaultGuard:
    """What a configuration must show before it is trained last instead of the default: a lead over
    the default beyond the noise of `validation_images` (0: no guard), and `min_epochs` of training
    in the search (beats_default)."""

    validation_images: int = 0
    min_epochs: int = 1

    @classmethod
    def for_search(cls, validation_images: int, max_epochs: int) -> DefaultGuard:
        return cls(validation_images, guard_epochs(max_epochs))


NO_GUARD = DefaultGuard()


def _leads_default(mine: list[Candidate], theirs: list[Candidate], gain: float, images: int) -> bool:
    """`mine` ahead of `theirs` at the most epochs both were scored at (else at the first of `mine`,
    theirs moved there along `gain`) by more than DEFAULT_MARGIN_Z standard errors on `images` images."""
    shared = {r.epochs for r in mine} & {r.epochs for r in theirs}
    epochs = max(shared) if shared else min(r.epochs for r in mine)
    p_mine = _accuracy_at(mine, epochs, gain)
    p_default = _accuracy_at(theirs, epochs, gain)
    # Independent binomial errors: the two share the validation images, so this overstates the noise.
    noise = math.sqrt((p_mine * (1 - p_mine) + p_default * (1 - p_default)) / images)
    return p_mine - p_default > DEFAULT_MARGIN_Z * noise


def beats_default(
    rungs: list[Candidate], default_rungs: list[Candidate], gain: float, guard: DefaultGuard
) -> bool:
    """Whether a configuration (its trials, `rungs`) was scored at the guard's `min_epochs` or more
    and beat the default's validation accuracy at equal epochs by more than the noise of the guard's
    `validation_images` (_leads_default). Only the promotion is asked of the longer rung: compared
    there, with the default's first epoch moved along the gain the promotions measured, width 48 (the
    winner at 900 s) fell within the noise in one of the 25 stored runs replayed (67a9cd4, model
    sampler, seed 2)."""
    scored = [r for r in rungs if r.accuracy is not None and r.epochs > 0]
    theirs = [r for r in default_rungs if r.accuracy is not None and r.epochs > 0]
    if not scored or not theirs or guard.validation_images <= 0:
        return True
    promoted = any(r.epochs >= guard.min_epochs for r in scored)
    return promoted and _leads_default(scored, theirs, gain, guard.validation_images)


def not_beating_default(candidates: list[Candidate], guard: DefaultGuard) -> set[str]:
    """Trials whose configuration did not pass the `guard` (beats_default): none of its trials is
    trained last while the default can be.
    Empty where no trial of the default is among the candidates (say its final training diverged).
    The budget pick is spared: its evidence is the portfolio bench's, at the final training's length."""
    by_id = {c.trial_id: c for c in candidates}
    configurations: dict[str, list[Candidate]] = {}
    for c in candidates:
        configurations.setdefault(configuration_of(c, by_id), []).append(c)
    default_rungs = [c for c in candidates if c.default]
    if not default_rungs:
        return set()
    gain = gain_per_log_epoch(candidates)
    return {
        c.trial_id
        for rungs in configurations.values()
        if not any(r.default or r.budget_pick for r in rungs)
        and not beats_default(rungs, default_rungs, gain, guard)
        for c in rungs
    }


def choose_final(
    candidates: list[Candidate],
    final_s: float | None,
    final_images: int,
    guard: DefaultGuard = NO_GUARD,
) -> Candidate | None:
    """The best trial after the final training `final_s` allows, among those it fits MIN_FINAL_EPOCHS
    epochs (all of them when none does); without a time budget, the best score (ties: the earliest
    trial). A configuration that is best at 9 epochs but fits only 12 in the final training's time
    loses to a cheaper one that fits 30, however its short score extrapolates. The plan's budget pick
    comes first, unless its trial scored more than BUDGET_PICK_TOLERANCE below the best. A trial whose
    configuration did not pass the `guard` (not_beating_default) is passed over for the default."""
    if not candidates:
        return None
    excluded = not_beating_default(candidates, guard)
    candidates = [c for c in candidates if c.trial_id not in excluded]
    if final_s is None or any(c.seconds_per_image <= 0 for c in candidates):
        return min(candidates, key=lambda c: (-c.score, c.trial_id))
    best_score = max(c.score for c in candidates)
    # Its one-epoch score is no evidence against it (a cheaper configuration gains over more epochs);
    # only one far below the default's says the bench's evidence does not hold here.
    picks = [c for c in candidates if c.budget_pick and c.score >= best_score - BUDGET_PICK_TOLERANCE]
    if picks:
        return picks[0]
    gain = gain_per_log_epoch(candidates)
    return min(
        candidates,
        key=lambda c: (
            final_epochs_that_fit(c, final_s, final_images) < MIN_FINAL_EPOCHS,
            -expected_final_score(c, final_s, final_images, gain),
            c.trial_id,
        ),
    )
