"""search.plan: the job's budget split and the clock-aware choice of the final trial."""

from __future__ import annotations

import dataclasses
import math

import pytest

from search.plan import (
    BUDGET_PICK_TOLERANCE,
    DEFAULT_GAIN_PER_LOG_EPOCH,
    DEFAULT_MARGIN_Z,
    FINAL_EPOCHS_WANTED,
    GUARD_MIN_EPOCHS,
    MAX_EXTRAPOLATION,
    MAX_SEARCH_SHARE,
    MIN_FINAL_EPOCHS,
    MIN_SEARCH_TRIALS,
    BudgetPick,
    Candidate,
    DefaultGuard,
    budget_pick,
    choose_final,
    expected_final_score,
    final_epochs_that_fit,
    gain_per_log_epoch,
    guard_epochs,
    not_beating_default,
    plan_budget,
    seconds_per_image,
    trials_before_guard,
)


def test_a_budget_that_fits_too_few_final_epochs_is_not_spent_searching() -> None:
    # 30 s per final epoch: 15 minutes fit 30 epochs and nothing else, so only the first trial ran.
    plan = plan_budget(900.0, final_epoch_s=30.0, spent_s=40.0)
    assert plan.search_s == 40.0 and plan.final_s == 860.0
    assert "no search" in plan.describe()
    # 30 minutes on 2 AVX2 cores fit 58 default epochs: a search there lost to the default alone.
    plan = plan_budget(1800.0, final_epoch_s=30.0, spent_s=40.0)
    assert plan.search_s == 40.0 and "fewer than the 60 it needs" in plan.describe()


def test_a_long_budget_searches_up_to_the_cap_and_keeps_the_final_epochs() -> None:
    plan = plan_budget(3600.0, final_epoch_s=30.0, spent_s=40.0)
    assert plan.search_s == pytest.approx(MAX_SEARCH_SHARE * 3600.0)
    # Where the cap does not bind, the final training keeps exactly what it wants.
    plan = plan_budget(3000.0, final_epoch_s=30.0, spent_s=40.0)
    assert plan.final_s >= FINAL_EPOCHS_WANTED * 30.0 and plan.search_s > 40.0
    assert plan.search_s + plan.final_s == pytest.approx(3000.0)


def test_pace_counts_optimizer_steps() -> None:
    assert seconds_per_image({"train_steps": 10, "train_seconds": 5.0}, batch_size=50) == pytest.approx(0.01)
    assert seconds_per_image({"train_steps": 0, "train_seconds": 0.0}, batch_size=50) is None


def test_the_final_choice_weighs_cost_per_epoch_against_the_time_left() -> None:
    # A configuration 8x slower and 3 points better after 9 epochs, against the cheap default.
    cheap = Candidate("00", score=0.70, epochs=9, seconds_per_image=0.001)
    slow = Candidate("01", score=0.73, epochs=9, seconds_per_image=0.008)
    images = 10_000
    # 100 s fits 10 cheap epochs but barely 1 slow one: the cheap one is expected to end higher.
    assert choose_final([cheap, slow], final_s=100.0, final_images=images) is cheap
    # An hour fits 45 slow epochs (and 360 cheap ones): whichever is expected to end higher.
    long = choose_final([cheap, slow], final_s=3600.0, final_images=images)
    expected = {
        c.trial_id: expected_final_score(c, 3600.0, images, DEFAULT_GAIN_PER_LOG_EPOCH) for c in (cheap, slow)
    }
    assert long.trial_id == max(expected, key=expected.get) == slow.trial_id
    # Without a time budget it is the best score, the earliest trial on ties.
    assert choose_final([cheap, slow], final_s=None, final_images=images) is slow
    twin = Candidate("02", score=0.73, epochs=9, seconds_per_image=0.001)
    assert choose_final([twin, slow], final_s=None, final_images=images) is slow


def test_a_trial_the_final_training_fits_too_few_epochs_is_not_chosen() -> None:
    """The 30-minute bench at e5f14a2: a 2x-costlier trial, 0.61 after 3 epochs against the default's
    0.42 after 1, extrapolated above it and was retrained 12 epochs (80.2 %, the default alone 81.9 %)."""
    default = Candidate("0000", score=0.42, epochs=1, seconds_per_image=0.0030)
    wide = Candidate("0010", score=0.61, epochs=3, seconds_per_image=0.0057, parent="0003")
    images, final_s = 12_000, 816.0
    assert final_epochs_that_fit(wide, final_s, images) < MIN_FINAL_EPOCHS
    gain = gain_per_log_epoch([default, wide])
    expected = {c.trial_id: expected_final_score(c, final_s, images, gain) for c in (default, wide)}
    assert expected["0010"] > expected["0000"]
    # Where neither fits MIN_FINAL_EPOCHS (816 s fit the default 22), the expectation decides...
    assert choose_final([default, wide], final_s, images) is wide
    # ...where one does, it is chosen over any that does not.
    roomy = 1.2 * MIN_FINAL_EPOCHS * default.seconds_per_image * images
    fits = {c.trial_id: final_epochs_that_fit(c, roomy, images) for c in (default, wide)}
    assert fits["0000"] >= MIN_FINAL_EPOCHS > fits["0010"]
    assert choose_final([default, wide], roomy, images) is default


def test_undertraining_costs_at_least_the_default_gain_even_when_the_measured_gain_is_flat() -> None:
    slow = Candidate("01", score=0.8, epochs=9, seconds_per_image=0.01)
    # Fits 1 epoch of the 9 it was scored at; a flat measured gain must not hide that.
    assert expected_final_score(slow, 100.0, 10_000, gain=0.0) == pytest.approx(
        0.8 - DEFAULT_GAIN_PER_LOG_EPOCH * math.log(9)
    )


def test_a_short_trial_is_not_extrapolated_past_a_longer_one_that_beat_it() -> None:
    # Hyperband's usual picture: the default reached 0.70 at 9 epochs; a 1-epoch trial scored 0.50.
    # Both fit 30 final epochs; a steep measured gain must not lift the short one past the long one.
    default = Candidate("00", score=0.70, epochs=9, seconds_per_image=0.001)
    short = Candidate("05", score=0.50, epochs=1, seconds_per_image=0.001)
    gain = 0.12
    assert expected_final_score(short, 360.0, 12_000, gain) == pytest.approx(
        0.50 + gain * math.log(MAX_EXTRAPOLATION)
    )
    assert choose_final([default, short], final_s=360.0, final_images=12_000) is default


def test_gain_is_measured_from_promotions() -> None:
    parent = Candidate("00", score=0.50, epochs=1, seconds_per_image=0.001)
    child = Candidate("03", score=0.61, epochs=3, seconds_per_image=0.001, parent="00")
    assert gain_per_log_epoch([parent, child]) == pytest.approx(0.11 / math.log(3))
    assert gain_per_log_epoch([parent]) == DEFAULT_GAIN_PER_LOG_EPOCH
    worse = Candidate("04", score=0.40, epochs=3, seconds_per_image=0.001, parent="00")
    assert gain_per_log_epoch([parent, worse]) == 0.0  # clipped: longer never predicted to hurt


NARROW = BudgetPick("narrow", {"width": 16}, min_epochs=3, max_epochs=12)
SHALLOW = BudgetPick("shallow", {"blocks": 1}, min_epochs=13, max_epochs=40)


def test_the_budget_pick_is_the_one_whose_measured_range_holds_the_epochs_that_fit() -> None:
    assert budget_pick((NARROW, SHALLOW), 3) is NARROW
    assert budget_pick((NARROW, SHALLOW), 12.5) is None  # between the measured ranges
    assert budget_pick((NARROW, SHALLOW), 40) is SHALLOW
    assert budget_pick((NARROW, SHALLOW), 41) is None  # beyond the evidence: the default
    assert budget_pick((), 6) is None


WIDE = BudgetPick("wide", {"width": 48}, min_epochs=20, costs={"mixed_bfloat16": 3.0, "float32": 2.0})


def test_a_budget_picks_range_counts_its_own_epochs_at_the_precisions_cost() -> None:
    # 45 default epochs of time are 22.5 of its own in float32, 15 in bfloat16.
    assert WIDE.epochs_that_fit(45, "float32") == 22.5
    assert budget_pick((WIDE, SHALLOW), 45, "float32") is WIDE
    assert budget_pick((WIDE, SHALLOW), 45, "mixed_bfloat16") is None
    assert budget_pick((WIDE, SHALLOW), 39, "mixed_bfloat16") is SHALLOW  # 13 of its own: too few
    assert budget_pick((WIDE,), 10_000, "float32") is WIDE  # no upper end: only where nothing is searched
    # A precision it was not measured at gets its largest cost; a pick without costs, the default's.
    assert WIDE.cost("mixed_float16") == 3.0
    assert budget_pick((WIDE,), 45, "mixed_float16") is None
    assert SHALLOW.cost("float32") == 1.0
    # A key with the CPU's vector width falls back to its precision's cost, and a listed one wins.
    assert WIDE.cost("float32/avx512") == 2.0
    by_width = BudgetPick("w", {}, 20, costs={"float32": 2.0, "float32/avx2": 1.5})
    assert by_width.cost("float32/avx2") == 1.5 and by_width.cost("float32/avx512") == 2.0


def test_a_pick_measured_at_one_precision_is_never_picked_at_another() -> None:
    # Measured in float32 only: at bfloat16's cost its range would hold 36 default epochs, where the
    # default led width 24 by 2.6 points.
    narrow = BudgetPick("narrow", {"width": 24}, 24, 40, {"float32": 0.6}, frozenset({"float32"}))
    assert narrow.fits(18, "float32") and budget_pick((narrow,), 18, "float32") is narrow
    assert not narrow.fits(18, "mixed_bfloat16") and budget_pick((narrow,), 18, "mixed_bfloat16") is None
    assert budget_pick((narrow, SHALLOW), 18, "mixed_bfloat16") is SHALLOW
    assert not narrow.fits(30, "float32")  # 50 of its own: beyond the evidence
    assert NARROW.fits(6, "mixed_float16")  # no led_at given: every cost key
    # Listed with the vector width: only there; listed by precision: at every width of it.
    avx2_only = BudgetPick("narrow", {"width": 24}, 24, 40, {"float32": 0.6}, frozenset({"float32/avx2"}))
    assert avx2_only.fits(18, "float32/avx2") and not avx2_only.fits(18, "float32/avx512")
    assert narrow.fits(18, "float32/avx512") and narrow.fits(18, "float32/avx2")


def test_in_float32_the_wide_gelu_pick_gets_the_budgets_where_bfloat16_trains_cutout() -> None:
    # Measured in float32 (2 AVX512-BF16 cores with ONEDNN_MAX_CPU_ISA=AVX2, 900 s, 40d312f, seed 0):
    # about 15.7 s per default epoch and a 15.7 s first trial after 17 s: 53 default epochs fit, too
    # few to search. At 3.2 (its bfloat16 cost) that is 16.6 epochs of 'w48-gelu', short of the 18.75
    # it led the default with, and cutout was trained (81.81 %); at its float32 cost of 2.4 it is 22,
    # and in float32 'w48-gelu' led the default on validation by 2.10 points with 21 epochs.
    from spaces.fast import FastNet

    args = dict(picks=FastNet.budget_picks, pick_trial_s=23.6, trial_s=15.7, trials_needed=10)
    bfloat16 = plan_budget(895.0, 15.7, 17.0, **args, cost_key="mixed_bfloat16")
    float32 = plan_budget(895.0, 15.7, 17.0, **args, cost_key="float32/avx2")
    assert bfloat16.pick == "cutout" and float32.pick == "w48-gelu"
    assert "'w48-gelu' (22 epochs at 2.4x the default's cost per epoch in float32/avx2)" in float32.describe()
    assert float32.cost_key == "float32/avx2" and bfloat16.cost_key == "mixed_bfloat16"
    # Its one trial is allowed its cost at the precision it trains in.
    assert float32.search_s == pytest.approx(17.0 + 23.6 * 2.4)
    assert plan_budget(895.0, 12.0, 17.0, **args, cost_key="mixed_bfloat16").search_s == pytest.approx(
        17.0 + 23.6 * 3.2
    )


def test_a_five_minute_job_trains_the_narrow_recipe_in_float32_and_the_default_net_s_in_bfloat16() -> None:
    # A 295 s job in float32 (2 AVX512-BF16 cores with ONEDNN_MAX_CPU_ISA=AVX2: 13 s per default epoch)
    # fits 17 default epochs, 28 of 'w24-recipe' at 0.6, where it led the default on validation. In
    # mixed bfloat16 (7 s per epoch) 33 fit: width 24 costs more there and trailed, but the same recipe
    # on the default's own net led it at 36.
    from spaces.fast import FastNet

    args = dict(picks=FastNet.budget_picks, pick_trial_s=13.0, trial_s=13.0, trials_needed=10)
    float32 = plan_budget(295.0, 13.0, 22.0, **args, cost_key="float32/avx2")
    assert float32.pick == "w24-recipe" and float32.search_s == pytest.approx(22.0 + 13.0 * 0.6)
    assert (
        "'w24-recipe' (28 epochs at 0.6x the default's cost per epoch in float32/avx2)" in float32.describe()
    )
    assert float32.cost_key == "float32/avx2"
    bfloat16 = plan_budget(295.0, 7.0, 15.0, **args, cost_key="mixed_bfloat16")
    assert bfloat16.pick == "w32-recipe" and bfloat16.search_s == pytest.approx(15.0 + 13.0 * 1.0)
    assert (
        "'w32-recipe' (33 epochs at 1x the default's cost per epoch in mixed_bfloat16)" in bfloat16.describe()
    )
    # Its range: 30 to 40 default epochs of time in bfloat16 (measured at 36), then cutout; never float32.
    assert [
        getattr(budget_pick(FastNet.budget_picks, e, "mixed_bfloat16"), "name", None)
        for e in (29, 30, 39, 40)
    ] == [None, "w32-recipe", "w32-recipe", "cutout"]
    for cost_key in ("float32/avx2", "float32/avx512", "float32/other"):
        for epochs in range(25, 45):
            assert getattr(budget_pick(FastNet.budget_picks, epochs, cost_key), "name", None) != "w32-recipe"
    # Its range starts at the least it was measured at, 6 default epochs of time (10 of its own; a
    # 5-minute job on one slow core fits 8 to 9), and ends where cutout takes over: a 15-minute job on
    # a slow machine (33 default epochs) left the gap between 30 and 40 to the default.
    assert [
        getattr(budget_pick(FastNet.budget_picks, e, "float32/avx2"), "name", None)
        for e in (5.9, 6, 8, 30, 33, 36, 39.9, 40)
    ] == [
        None,
        "w24-recipe",
        "w24-recipe",
        "w24-recipe",
        "w24-recipe",
        "w24-recipe",
        "w24-recipe",
        "cutout",
    ]
    # Every float32 budget from 8 to 60 default epochs of time trains a pick, whatever the kernels.
    for cost_key in ("float32/avx2", "float32/avx512", "float32/other"):
        for epochs in range(8, 61):
            assert budget_pick(FastNet.budget_picks, epochs, cost_key) is not None, (cost_key, epochs)


def test_with_avx512_float32_kernels_the_narrow_recipe_counts_its_cost_there() -> None:
    # There width 24 costs 0.72 to 0.80 of the default's epoch, not 0.6 (results/
    # bench_portfolio_avx512core_18*.csv): the same 295 s job fits 17 default epochs, 23 of its own,
    # and its one trial is allowed 0.75 of the default's; its range (from 10 of its own epochs) starts
    # at 7.5 default epochs there, not 6, and still ends where cutout takes over.
    from spaces.fast import FastNet

    args = dict(picks=FastNet.budget_picks, pick_trial_s=13.0, trial_s=13.0, trials_needed=10)
    avx512 = plan_budget(295.0, 13.0, 22.0, **args, cost_key="float32/avx512")
    assert avx512.pick == "w24-recipe" and avx512.search_s == pytest.approx(22.0 + 13.0 * 0.75)
    assert "(23 epochs at 0.75x the default's cost per epoch in float32/avx512)" in avx512.describe()
    assert [
        getattr(budget_pick(FastNet.budget_picks, e, "float32/avx512"), "name", None)
        for e in (7, 7.5, 12, 38, 40)
    ] == [None, "w24-recipe", "w24-recipe", "w24-recipe", "cutout"]
    # The wide pick's float32 cost holds at either width (measured under AVX2 only).
    assert plan_budget(895.0, 15.7, 17.0, **args, cost_key="float32/avx512").pick == "w48-gelu"


def test_where_nothing_is_searched_the_plan_trains_the_budget_pick_after_one_trial_of_it() -> None:
    # 30 s per final epoch: 5 minutes fit 7 epochs of the default, inside NARROW's range.
    plan = plan_budget(300.0, final_epoch_s=30.0, spent_s=40.0, picks=(NARROW, SHALLOW), pick_trial_s=20.0)
    assert plan.pick == "narrow"
    assert plan.search_s == 60.0 and plan.final_s == 240.0  # the pick's trial is all the search gets
    assert "'narrow'" in plan.describe() and "no search" in plan.describe()
    # 15 minutes fit 27 epochs: SHALLOW's range.
    assert plan_budget(900.0, 30.0, 40.0, picks=(NARROW, SHALLOW), pick_trial_s=20.0).pick == "shallow"
    # A pick measured at three times the default's cost per epoch gets three times the trial time
    # (and 7 default epochs of time are 2.3 of its own).
    costly = dataclasses.replace(NARROW, min_epochs=2, costs={"float32": 3.0})
    plan = plan_budget(300.0, final_epoch_s=30.0, spent_s=40.0, picks=(costly,), pick_trial_s=20.0)
    assert plan.pick == "narrow" and plan.search_s == 100.0 and plan.final_s == 200.0
    # Where the budget searches, the search decides; with the search off (default_only), the default.
    assert plan_budget(3600.0, 30.0, 40.0, picks=(NARROW, SHALLOW)).pick is None
    assert plan_budget(300.0, 30.0, 40.0, max_share=0.0, picks=(NARROW, SHALLOW)).pick is None


def test_the_budget_pick_is_trained_last_unless_its_trial_scored_far_below_the_default() -> None:
    default = Candidate("0000", score=0.42, epochs=1, seconds_per_image=0.0030)
    # Cheaper and a little worse after its one epoch: the bench says it ends higher at this budget.
    pick = Candidate("0001", score=0.40, epochs=1, seconds_per_image=0.0015, budget_pick=True)
    assert choose_final([default, pick], final_s=200.0, final_images=12_000) is pick
    # Far below: the bench's evidence does not hold on this data.
    lost = dataclasses.replace(pick, score=default.score - BUDGET_PICK_TOLERANCE - 0.01)
    assert choose_final([default, lost], final_s=200.0, final_images=12_000) is default
    # Without a budget there is no plan, so no pick: the best score.
    assert choose_final([default, pick], final_s=None, final_images=12_000) is default


def test_a_search_with_time_for_too_few_trials_is_none_and_the_budget_pick_is_trained() -> None:
    # Measured at 300 s on 2 AVX512-BF16 cores: 4 s per default epoch left 12 s of "search" after 9 s
    # spent, in which one trial was cut by the budget, and the final model lost its budget pick.
    pick = BudgetPick("cutout", {"augment_cutout": 0.5}, 40, FINAL_EPOCHS_WANTED + 10)
    plan = plan_budget(300.0, final_epoch_s=4.0, spent_s=9.0, picks=(pick,), pick_trial_s=9.0, trial_s=6.0)
    assert plan.pick == "cutout" and plan.search_s == 18.0
    assert "fits fewer than the 3 trials a search needs" in plan.describe()
    # Room for a few trials: a search, which decides.
    plan = plan_budget(300.0, final_epoch_s=3.0, spent_s=9.0, picks=(pick,), pick_trial_s=9.0, trial_s=6.0)
    assert plan.pick is None and plan.search_s > 9.0 + MIN_SEARCH_TRIALS * 6.0


def trial(
    trial_id: str, accuracy: float, epochs: int, pace: float, parent: str | None = None, **kw
) -> Candidate:
    """A candidate whose objective is validation accuracy (score and accuracy are the same number)."""
    return Candidate(trial_id, accuracy, epochs, pace, parent=parent, accuracy=accuracy, **kw)


# The 900 s bench's model sampler, seed 2 (67a9cd4, 2 AVX512-BF16 cores, 2,000 validation images): the
# default's one epoch, and two portfolio entries at 1 and then 3 epochs; both fit 30 final epochs.
SEED2_DEFAULT = trial("0000", 0.429, 1, 0.00063, default=True)
SEED2_W24_1, SEED2_W24_3 = trial("0002", 0.4525, 1, 0.00093), trial("0011", 0.5975, 3, 0.00100, "0002")
SEED2_W48_1, SEED2_W48_3 = trial("0003", 0.469, 1, 0.00119), trial("0009", 0.5925, 3, 0.00115, "0003")
SEED2 = [SEED2_DEFAULT, SEED2_W24_1, SEED2_W48_1, SEED2_W48_3, SEED2_W24_3]


def test_a_trial_that_did_not_beat_the_default_beyond_the_noise_is_not_trained_last() -> None:
    """Width 24 led the default's first epoch by 2.4 points (under the margin on 2,000 images) and
    width 48 by 4.0; at 3 epochs width 24 led width 48 by 0.5. Chosen on that, width 24 ended 1.4
    points below the default trained alone; width 48 beat it in five runs of six."""
    final_s, images = 450.0, 12_000
    assert choose_final(SEED2, final_s, images) is SEED2_W24_3  # no guard: the 0.5-point lead wins
    assert choose_final(SEED2, final_s, images, guard=DefaultGuard(2000)) is SEED2_W48_3
    assert not_beating_default(SEED2, DefaultGuard(2000)) == {"0002", "0011"}
    # On ten times the validation images the same 2.4-point lead is beyond the noise.
    assert not_beating_default(SEED2, DefaultGuard(20_000)) == set()
    assert choose_final(SEED2, final_s, images, guard=DefaultGuard(20_000)) is SEED2_W24_3
    # Without a time budget (the best score) the guard holds too.
    assert choose_final(SEED2, None, images, guard=DefaultGuard(2000)) is SEED2_W48_3


def test_where_nothing_beat_the_default_beyond_the_noise_the_default_is_trained() -> None:
    default = trial("0000", 0.42, 1, 0.0006, default=True)
    close = [trial("0001", 0.44, 1, 0.0006), trial("0004", 0.60, 3, 0.0006, parent="0001")]
    assert choose_final([default, *close], 450.0, 12_000) is close[1]
    assert choose_final([default, *close], 450.0, 12_000, guard=DefaultGuard(2000)) is default
    # The margin is DEFAULT_MARGIN_Z standard errors of the difference: just over it, the trial counts.
    noise = math.sqrt((0.42 * 0.58 + 0.48 * 0.52) / 2000)
    just = trial("0001", 0.42 + DEFAULT_MARGIN_Z * noise + 0.001, 1, 0.0006)
    assert not_beating_default([default, just], DefaultGuard(2000)) == set()
    short = trial("0001", 0.42 + DEFAULT_MARGIN_Z * noise - 0.001, 1, 0.0006)
    assert not_beating_default([default, short], DefaultGuard(2000)) == {"0001"}


def test_the_default_guard_compares_at_the_most_epochs_both_were_scored_at() -> None:
    # The default promoted to 3 epochs: a trial far ahead at 1 epoch but level at 3 has not beaten it.
    default_1 = trial("0000", 0.42, 1, 0.0006, default=True)
    default_3 = trial("0005", 0.60, 3, 0.0006, parent="0000", default=True)
    other_1 = trial("0001", 0.50, 1, 0.0006)
    other_3 = trial("0006", 0.61, 3, 0.0006, parent="0001")
    assert not_beating_default([default_1, default_3, other_1, other_3], DefaultGuard(2000)) == {
        "0001",
        "0006",
    }
    # A trial that started at 3 epochs meets the default's 1-epoch score moved along the measured gain.
    fresh = trial("0007", 0.62, 3, 0.0006)
    gain = gain_per_log_epoch([default_1, fresh])
    assert gain == DEFAULT_GAIN_PER_LOG_EPOCH
    assert (
        not_beating_default([default_1, fresh], DefaultGuard(2000)) == set()
    )  # 0.62 against 0.42 + 0.05 ln 3
    behind = dataclasses.replace(fresh, score=0.47, accuracy=0.47)
    assert not_beating_default([default_1, behind], DefaultGuard(2000)) == {"0007"}


# The 900 s bench in float32 at a0d41c6 (2 AVX512-BF16 cores with ONEDNN_MAX_CPU_ISA=AVX2, random
# sampler, seed 0): the default fitted 60 final epochs with 75 s to spare, so the search ran the warm
# start's four entries for one epoch each. Width 48 (0003) fitted fewer than 30 final epochs; the
# width-24 GELU AdamW entry (0002) led the default by 3.35 points, trained 81 epochs and scored 80.98 %
# on the local test images, the default trained alone 81.83 %.
F32_DEFAULT = trial("0000", 0.4050, 1, 0.0011007, default=True)
F32_W24_GELU = trial("0002", 0.4385, 1, 0.0007419)
F32 = [F32_DEFAULT, trial("0001", 0.4095, 1, 0.0004773), F32_W24_GELU, trial("0003", 0.4795, 1, 0.0022326)]
F32_FINAL_S = 12.9 * 60


def test_a_lead_after_one_epoch_alone_does_not_leave_the_default() -> None:
    assert guard_epochs(9) == GUARD_MIN_EPOCHS == 3 and guard_epochs(2) == 2 and guard_epochs(1) == 1
    assert choose_final(F32, F32_FINAL_S, 12_000, DefaultGuard(2000)) is F32_W24_GELU  # weighed at one epoch
    assert choose_final(F32, F32_FINAL_S, 12_000, DefaultGuard(2000, 3)) is F32_DEFAULT
    assert not_beating_default(F32, DefaultGuard(2000, 3)) == {"0001", "0002", "0003"}
    # Promoted to 3 epochs, its lead at the one epoch both had counts.
    promoted = trial("0005", 0.62, 3, 0.0007419, parent="0002")
    assert choose_final([*F32, promoted], F32_FINAL_S, 12_000, DefaultGuard(2000, 3)) is promoted
    # Level there with the default promoted too, it is not.
    default_3 = trial("0006", 0.61, 3, 0.0011007, parent="0000", default=True)
    chosen = choose_final([*F32, promoted, default_3], F32_FINAL_S, 12_000, DefaultGuard(2000, 3))
    assert chosen is default_3


def test_the_deeper_guard_still_weighs_the_first_epochs() -> None:
    """At 67a9cd4 both entries were promoted to 3 epochs; width 24 led the default within the noise at
    the one epoch both had, width 48 beyond it: the promotion asked for changes neither."""
    assert choose_final(SEED2, 450.0, 12_000, DefaultGuard(2000, 3)) is SEED2_W48_3
    assert not_beating_default(SEED2, DefaultGuard(2000, 3)) == {"0002", "0011"}


def test_the_default_guard_spares_the_budget_pick_and_needs_a_default() -> None:
    default = trial("0000", 0.42, 1, 0.0030, default=True)
    pick = trial("0001", 0.40, 1, 0.0015, budget_pick=True)
    assert choose_final([default, pick], 200.0, 12_000, guard=DefaultGuard(2000)) is pick
    # The default's final training diverged (it is no candidate any more): the rest compete as before.
    assert (
        not_beating_default([SEED2_W24_1, SEED2_W24_3, SEED2_W48_1, SEED2_W48_3], DefaultGuard(2000)) == set()
    )
    # A trial without a validation accuracy is not judged by it.
    blind = dataclasses.replace(SEED2_W24_3, accuracy=None, parent=None)
    assert not_beating_default([SEED2_DEFAULT, blind], DefaultGuard(2000)) == set()


def test_a_search_needs_time_for_hyperband_to_promote_a_trial_to_the_guards_epochs() -> None:
    # Hyperband's first bracket at --max-epochs 9 --factor 3 (compat.hyperband_first_bracket): 9
    # one-epoch trials, the default's among them, then the best continues 2 epochs to the guard's 3.
    assert trials_before_guard([(9, 1), (3, 3), (1, 9)], guard_epochs(9)) == 10
    assert trials_before_guard([(27, 1), (9, 3), (3, 9), (1, 27)], guard_epochs(27)) == 28
    # --max-epochs 9 --factor 2 starts at 2 epochs: costed in first trials, 10 + 1 epoch / 2 - 1.
    assert trials_before_guard([(10, 2), (5, 3), (3, 5), (2, 9)], guard_epochs(9)) == 9.5
    # --max-epochs 1: the guard is 1 epoch, reached in the first round.
    assert trials_before_guard([(1, 1)], guard_epochs(1)) == 0


def test_a_search_too_short_to_promote_a_trial_is_none_and_the_budget_pick_is_trained() -> None:
    # Measured in float32 (2 AVX512-BF16 cores with ONEDNN_MAX_CPU_ISA=AVX2, 900 s, e953450, seed 0):
    # 12.9 s per default epoch and a 13 s first trial after 15 s left 1.3 min of search, time for 3
    # trials but not for a promotion, so the default was trained; the budget for 64 default epochs is
    # 'w48-gelu's range, and the pick scored 1.1 points above the default in seed 1.
    from spaces.fast import FastNet

    args = dict(picks=FastNet.budget_picks, pick_trial_s=19.5, trial_s=13.0)
    assert plan_budget(895.0, 12.9, 15.0, **args, trials_needed=MIN_SEARCH_TRIALS).pick is None
    plan = plan_budget(895.0, 12.9, 15.0, **args, trials_needed=10)
    assert plan.pick == "w48-gelu" and plan.trials_needed == 10
    assert "fewer than the 10 trials a search needs" in plan.describe()
    # Fewer than MIN_SEARCH_TRIALS is never enough.
    assert plan_budget(895.0, 12.9, 15.0, **args, trials_needed=0).trials_needed == MIN_SEARCH_TRIALS
