"""The oracle's proposals: portfolio first, then random or a TPE model of the finished trials."""

from __future__ import annotations

from collections import Counter

import keras_tuner as kt
import pytest

from search.sampler import MIN_TRIALS_FOR_MODEL, model_rung, model_values, optuna_distribution
from search.tuner import BudgetedHyperbandOracle


def space() -> kt.HyperParameters:
    """A small conditional space, as the spaces declare theirs."""
    hp = kt.HyperParameters()
    hp.Choice("width", [16, 32, 64], default=32)
    hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.0)
    optimizer = hp.Choice("optimizer", ["sgd", "adamw"], default="sgd")
    with hp.conditional_scope("optimizer", ["sgd"]):
        hp.Float("sgd_learning_rate", 0.01, 0.3, sampling="log", default=0.1)
    with hp.conditional_scope("optimizer", ["adamw"]):
        hp.Float("adamw_learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3)
    hp.Boolean("cutout", default=False)
    hp.Int("blocks", 1, 3, default=2)
    del optimizer
    return hp


def oracle(directory, sampler: str, portfolio=({},), seed: int = 0) -> BudgetedHyperbandOracle:
    oracle = BudgetedHyperbandOracle(
        objective=kt.Objective("val_accuracy", "max"),
        max_epochs=1,  # one bracket of 1-epoch trials: every trial is a new configuration
        hyperband_iterations=1000,
        seed=seed,
        sampler=sampler,
        portfolio=portfolio,
    )
    oracle.hyperparameters = space()
    # What a Tuner does with its oracle before the first trial (KerasTuner has no public form of it).
    oracle._set_project_dir(str(directory), "project")
    return oracle


def finish(oracle: BudgetedHyperbandOracle, score_of) -> kt.engine.trial.Trial:
    """Create one trial through KerasTuner's own path and end it with a score."""
    trial = oracle.create_trial("tuner0")
    assert trial.status == "RUNNING"
    oracle.update_trial(trial.trial_id, {"val_accuracy": score_of(trial.hyperparameters.values)})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    return trial


def is_wide(values) -> float:
    return 0.9 if values["width"] == 64 else 0.1


def test_kerastuner_parameters_map_to_optuna_distributions() -> None:
    hps = space()
    by_name = {hp.name: optuna_distribution(hp) for hp in hps.space}
    assert by_name["width"].choices == (16, 32, 64)
    assert (by_name["dropout"].low, by_name["dropout"].high, by_name["dropout"].step) == (0.0, 0.3, 0.1)
    assert by_name["sgd_learning_rate"].log and by_name["sgd_learning_rate"].step is None
    assert by_name["cutout"].choices == (True, False)
    assert (by_name["blocks"].low, by_name["blocks"].high) == (1, 3)
    assert (
        optuna_distribution(kt.HyperParameters().Fixed("f", 3) and hps.Fixed("augment", True) and _fixed())
        is None
    )


def _fixed():
    hp = kt.HyperParameters()
    hp.Fixed("augment", True)
    return hp.space[0]


def test_portfolio_comes_first_default_first_then_random(tmp_path) -> None:
    portfolio = ({}, {"width": 64, "optimizer": "adamw", "adamw_learning_rate": 0.003})
    search = oracle(tmp_path, "random", portfolio)
    trials = [finish(search, is_wide) for _ in range(4)]
    first, second = (
        {k: v for k, v in t.hyperparameters.values.items() if not k.startswith("tuner/")} for t in trials[:2]
    )
    assert first == {hp.name: hp.default for hp in space().space if hp.name != "adamw_learning_rate"}
    assert second["width"] == 64 and second["adamw_learning_rate"] == 0.003
    assert "sgd_learning_rate" not in second  # inactive under adamw: not drawn, not stored
    assert second["dropout"] == 0.0  # what the entry omits keeps its default
    assert [search.proposals[t.trial_id] for t in trials] == ["default", "portfolio", "random", "random"]


def test_a_queued_budget_pick_is_the_next_and_last_new_configuration(tmp_path) -> None:
    search = oracle(tmp_path, "random", portfolio=({}, {"width": 16}))
    first = finish(search, is_wide)
    # search.run's planner after the default's trial: nothing to search, but a budget pick.
    search.queue_budget_pick(search.portfolio_values({"width": 64, "blocks": 1}))
    pick = finish(search, is_wide)
    assert pick.hyperparameters.values["width"] == 64 and pick.hyperparameters.values["blocks"] == 1
    assert [search.proposals[t.trial_id] for t in (first, pick)] == ["default", "budget"]
    assert search.create_trial("tuner0").status == "STOPPED"


def test_an_interrupted_budget_pick_runs_again_after_a_resume(tmp_path) -> None:
    search = oracle(tmp_path, "random")
    finish(search, is_wide)
    search.queue_budget_pick(search.portfolio_values({"width": 16}))
    pick = search.create_trial("tuner0")  # killed while it trains: RUNNING in the saved state
    resumed = oracle(tmp_path, "random")
    resumed.reload()  # what the tuner does with a run folder that holds a search
    resumed.queue_budget_pick(resumed.portfolio_values({"width": 16}))  # the planner, on resume
    again = resumed.create_trial("tuner1")
    assert again.status == "RUNNING" and again.trial_id == pick.trial_id


@pytest.mark.parametrize("seed", [0, 7])
def test_the_same_seed_proposes_the_same_random_configurations(tmp_path, seed: int) -> None:
    # Seed 0 is the default: KerasTuner alone turns it into a random seed (`seed or randint`).
    runs = []
    for name in ("first", "second"):
        search = oracle(tmp_path / name, "random", seed=seed)
        runs.append([finish(search, is_wide).hyperparameters.values for _ in range(6)])
    assert runs[0] == runs[1]
    assert len({str(values) for values in runs[0]}) == 6


def test_model_proposals_start_once_a_budget_has_enough_results_and_find_the_good_region(tmp_path) -> None:
    search = oracle(tmp_path, "model", seed=3)
    trials = [finish(search, is_wide) for _ in range(MIN_TRIALS_FOR_MODEL + 40)]
    sources = [search.proposals[t.trial_id] for t in trials]
    assert "model" not in sources[:MIN_TRIALS_FOR_MODEL]
    later = [t for t in trials if search.proposals[t.trial_id] == "model"]
    # A fixed share stays random (about a third).
    assert 0.45 < len(later) / (len(trials) - MIN_TRIALS_FOR_MODEL) < 0.9
    widths = Counter(t.hyperparameters.values["width"] for t in later)
    # Random sampling picks width 64 a third of the time; the model, fitted to where the good
    # scores are, far more often.
    assert widths[64] / len(later) > 0.7, widths


def test_model_proposals_respect_conditions_and_are_reproducible(tmp_path) -> None:
    hps = space()
    search = oracle(tmp_path, "random")
    done = [finish(search, lambda v: 0.5 if v["optimizer"] == "adamw" else 0.2) for _ in range(12)]
    first = model_values(hps.space, done, maximize=True, seed=11)
    assert first == model_values(hps.space, done, maximize=True, seed=11)
    for seed in range(10):
        values = model_values(hps.space, done, maximize=True, seed=seed)
        inactive = "sgd_learning_rate" if values["optimizer"] == "adamw" else "adamw_learning_rate"
        assert inactive not in values
        assert 0.0 <= values["dropout"] <= 0.3 and values["width"] in (16, 32, 64)


def test_the_model_waits_for_enough_results_at_one_budget(tmp_path) -> None:
    search = oracle(tmp_path, "random")
    done = [finish(search, is_wide) for _ in range(MIN_TRIALS_FOR_MODEL - 1)]
    assert model_rung(done) is None
    assert model_values(space().space, done, maximize=True, seed=0) is None
    done.append(finish(search, is_wide))
    assert model_rung(done) == 1


def test_proposals_survive_the_oracle_state_round_trip(tmp_path) -> None:
    search = oracle(tmp_path / "a", "model")
    for _ in range(3):
        finish(search, is_wide)
    state = search.get_state()
    restored = oracle(tmp_path / "b", "model")
    restored.set_state(state)
    assert restored.proposals == search.proposals


@pytest.mark.parametrize("name", ["fast", "cnn", "resnet"])
def test_portfolio_entries_and_budget_picks_name_real_hyperparameters_with_allowed_values(name: str) -> None:
    from spaces import get_space
    from spaces.base import DataSpec

    space_class = get_space(name)
    hypermodel = space_class(DataSpec(num_classes=10))
    hps = kt.HyperParameters()
    hypermodel.build(hps)  # registers the default path's parameters
    known = {}
    for entry in (*space_class.portfolio, *(pick.values for pick in space_class.budget_picks)):
        values = kt.HyperParameters()
        values.values.update(entry)
        hypermodel.build(values)  # builds: conditional parameters the entry opens are registered
        known.update({hp.name: hp for hp in values.space})
        for key, value in entry.items():
            assert key in known, f"{name} portfolio names unknown hyper-parameter {key}"
            config = known[key].get_config()
            if "values" in config and config["values"]:
                assert value in config["values"], f"{name}: {key}={value} not in {config['values']}"
            elif "min_value" in config:
                assert config["min_value"] <= value <= config["max_value"], f"{name}: {key}={value}"
