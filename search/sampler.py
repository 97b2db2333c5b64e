"""Model-based proposals for Hyperband (BOHB, Falkner, Klein and Hutter 2018) with Optuna's TPE.

Once enough trials have finished at some Hyperband budget (epochs), a new configuration is drawn
from a Tree-structured Parzen Estimator fitted to the trials of the largest such budget: densities
of the good and of the bad configurations, conditional hyper-parameters included (Optuna's
`group=True` splits the space by which parameters are active together). The density math is
Optuna's; this module only translates between KerasTuner's space and Optuna's distributions.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Any

import keras_tuner as kt
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

# BOHB's defaults: the model starts once a budget has d+1 results (here at least 8, since even the
# fast space has 10+ hyper-parameters and a short search rarely gets that far), and a third of the
# proposals stays random so that the search cannot collapse onto one region.
MIN_TRIALS_FOR_MODEL = 8
RANDOM_SHARE = 1 / 3

optuna.logging.set_verbosity(optuna.logging.WARNING)


def optuna_distribution(hp: kt.engine.hyperparameters.HyperParameter) -> BaseDistribution | None:
    """The Optuna distribution of a KerasTuner hyper-parameter; None for a Fixed one."""
    config = hp.get_config()
    kind = type(hp).__name__
    if kind == "Choice":
        return CategoricalDistribution(config["values"])
    if kind == "Boolean":
        return CategoricalDistribution([True, False])
    log = config.get("sampling") == "log"
    if kind == "Int":
        # Optuna's log scale takes no step; KerasTuner's log Int ranges step by 1 anyway.
        step = 1 if log else int(config.get("step") or 1)
        return IntDistribution(config["min_value"], config["max_value"], log=log, step=step)
    if kind == "Float":
        step = None if log else config.get("step")
        return FloatDistribution(config["min_value"], config["max_value"], log=log, step=step)
    return None


def rung_trials(trials: list[kt.engine.trial.Trial]) -> dict[int, list[kt.engine.trial.Trial]]:
    """Finished trials with a score, by the epochs they were trained for (Hyperband's budget)."""
    rungs: dict[int, list[kt.engine.trial.Trial]] = defaultdict(list)
    for trial in trials:
        if trial.status == "COMPLETED" and trial.score is not None:
            rungs[int(trial.hyperparameters.values.get("tuner/epochs", 0))].append(trial)
    return rungs


def model_rung(trials: list[kt.engine.trial.Trial], min_trials: int = MIN_TRIALS_FOR_MODEL) -> int | None:
    """The largest budget with enough results to fit the model on, or None (then: random)."""
    enough = [epochs for epochs, done in rung_trials(trials).items() if len(done) >= min_trials]
    return max(enough, default=None)


def _inside(distribution: BaseDistribution, value: Any) -> Any:
    """A stored value as its distribution accepts it: KerasTuner's stepped floats can land a hair
    outside their range (0.1 * 3 = 0.30000000000000004 > 0.3)."""
    if isinstance(distribution, CategoricalDistribution):
        return value
    return min(max(value, distribution.low), distribution.high)


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    return trial.suggest_float(
        name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
    )


def model_values(
    space: list[kt.engine.hyperparameters.HyperParameter],
    trials: list[kt.engine.trial.Trial],
    maximize: bool,
    seed: int,
    min_trials: int = MIN_TRIALS_FOR_MODEL,
) -> dict[str, Any] | None:
    """A configuration proposed by TPE from the trials of the largest budget with enough results;
    None while no budget has `min_trials` of them. The same inputs and seed give the same proposal."""
    rung = model_rung(trials, min_trials)
    if rung is None:
        return None
    distributions = {hp.name: optuna_distribution(hp) for hp in space}
    with warnings.catch_warnings():
        # multivariate and group are marked experimental in Optuna; they are what handles the
        # conditional learning-rate ranges (one per optimizer), so we use them knowingly.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=0, multivariate=True, group=True)
        study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=sampler)
        for done in rung_trials(trials)[rung]:
            values = done.hyperparameters.values
            used = {
                name: distribution
                for name, distribution in distributions.items()
                if distribution is not None and name in values
            }
            params = {name: _inside(used[name], values[name]) for name in used}
            study.add_trial(optuna.trial.create_trial(params=params, distributions=used, value=done.score))
        proposal = study.ask()
        # Walk the space in its own order, so a parameter is drawn only where its conditions hold.
        hps = kt.HyperParameters()
        for hp in space:
            hps.merge([hp])
            if not hps.is_active(hp):
                continue
            distribution = distributions[hp.name]
            value = hp.default if distribution is None else _suggest(proposal, hp.name, distribution)
            hps.values[hp.name] = value
    return hps.values
