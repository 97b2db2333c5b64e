"""search/compat.py holds every internal of KerasTuner, Keras and TensorFlow that HyperCNN uses.

These tests fail at once when a library upgrade renames or re-signs one of them, when the installed
versions are not the ones they were checked against, or when an internal is used anywhere else.
"""

from __future__ import annotations

import ast
import inspect
from importlib import metadata
from pathlib import Path

import keras
import keras_tuner as kt
import pytest

from search import compat

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FILES = sorted((ROOT / "search").rglob("*.py")) + sorted((ROOT / "spaces").rglob("*.py"))


@pytest.mark.parametrize(("package", "version"), sorted(compat.CHECKED_VERSIONS.items()))
def test_installed_versions_are_the_checked_ones(package: str, version: str) -> None:
    assert metadata.version(package) == version, f"re-check search/compat.py against {package}"


def test_every_internal_name_exists_with_its_signature() -> None:
    for owner, name, parameters in compat.internal_names():
        assert hasattr(owner, name), f"{getattr(owner, '__name__', owner)}.{name} is gone"
        if parameters is not None:
            found = list(inspect.signature(getattr(owner, name)).parameters)
            assert found == parameters, f"{owner.__name__}.{name}{found}: expected {parameters}"


def test_instance_internals_exist_on_real_objects() -> None:
    from spaces.optimizers import FusedAdamW, FusedSGD

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    model.compile(optimizer=FusedSGD(schedule, momentum=0.9), loss="mse", metrics=["accuracy"])
    compat.build_compile_metrics(model)
    assert isinstance(
        compat.learning_rate_schedule(model.optimizer), keras.optimizers.schedules.ExponentialDecay
    )
    model.optimizer.build(model.trainable_variables)
    kernel = model.trainable_variables[0]
    assert compat.optimizer_slot(model.optimizer, "momentums", kernel).shape == kernel.shape
    adamw = FusedAdamW(0.01)
    adamw.build(model.trainable_variables)
    for slots in ("_momentums", "_velocities"):
        assert compat.optimizer_slot(adamw, slots, kernel).shape == kernel.shape
    oracle = kt.oracles.HyperbandOracle(objective="val_loss", max_epochs=2)
    assert compat.oracle_has_tried(oracle, {"x": 1}) is False
    assert compat.has_trials_to_retry(oracle) is False
    compat.requeue_trial(oracle, "07")
    compat.requeue_trial(oracle, "07")
    assert oracle.get_state()["retry_queue"] == ["07"]
    assert compat.has_trials_to_retry(oracle) is True
    assert compat.hyperband_open_trials(oracle) == set()


def test_the_first_bracket_is_what_hyperband_trains_before_its_first_promotion(tmp_path) -> None:
    """search.plan.trials_before_guard reads the first bracket's sizes: a real HyperbandOracle, fed
    finished trials, must fill that round and only then continue the best to the next round's epochs."""
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    objective = kt.Objective("score", "max")
    oracle = kt.oracles.HyperbandOracle(
        objective=objective, max_epochs=9, factor=3, hyperparameters=hp, seed=1
    )
    oracle._set_project_dir(str(tmp_path), "hyperband")  # what a Tuner does; a test-only internal
    bracket = compat.hyperband_first_bracket(oracle)
    assert bracket == [(9, 1), (3, 3), (1, 9)]
    handed_out = []
    while True:
        trial = oracle.create_trial("tuner0")
        values = trial.hyperparameters.values
        handed_out.append((values["tuner/initial_epoch"], values["tuner/epochs"]))
        if values["tuner/epochs"] > 1:
            break
        oracle.update_trial(trial.trial_id, {"score": values["x"]})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert handed_out == [(0, 1)] * 9 + [(1, 3)]


def test_keras_tuner_condition_print_is_silenced(capsys) -> None:
    import inspect

    from keras_tuner.src.engine import conditions

    # When KerasTuner drops its debug print, this fails: then drop silence_condition_proto_print too.
    assert "print(" in inspect.getsource(conditions.Parent.to_proto)
    compat.silence_condition_proto_print()
    conditions.Parent("optimizer", ["adamw"]).to_proto()
    assert capsys.readouterr().out == ""


def _live_func_graphs() -> int:
    import gc

    from tensorflow.python.framework.func_graph import FuncGraph

    gc.collect()
    return sum(isinstance(o, FuncGraph) for o in gc.get_objects())


def test_forgetting_custom_gradients_frees_trained_models_steps() -> None:
    import numpy as np

    def train_and_drop() -> None:
        keras.backend.clear_session(free_memory=True)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(np.zeros((8, 4)), np.zeros((8, 2)), epochs=1, verbose=0)

    compat.forget_custom_gradients()
    train_and_drop()
    baseline = _live_func_graphs()
    train_and_drop()
    # TensorFlow still leaks the step through its registry: when this fails, it no longer does, and
    # forget_custom_gradients (and its call in the tuner) can go.
    assert _live_func_graphs() > baseline
    assert compat.forget_custom_gradients() >= 2
    assert _live_func_graphs() < baseline


def _defined_private_names() -> set[str]:
    """Underscore names HyperCNN defines itself (methods, functions, attributes it assigns)."""
    names = set()
    for path in PACKAGE_FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name.startswith("_"):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return names


# Underscore names of the standard library that it documents as public.
STANDARD_LIBRARY_PUBLIC = {"_exit"}  # os._exit: a worker that lost its chief leaves at once


def test_no_internal_is_used_outside_compat() -> None:
    ours = _defined_private_names() | STANDARD_LIBRARY_PUBLIC
    offenders = []
    for path in PACKAGE_FILES:
        if path.name == "compat.py":
            continue
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Attribute):
                name = node.attr
                private = name.startswith("_") and not name.startswith("__") and name not in ours
                if private or name == "src":  # kt.src, keras.src: the libraries' private trees
                    offenders.append(f"{where} .{name}")
            elif isinstance(node, ast.ImportFrom | ast.Import):
                modules = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                )
                for module in modules:
                    if module.startswith(("tensorflow.python", "keras.src", "keras_tuner.src")):
                        offenders.append(f"{where} import {module}")
    # numpy._core names appear in cifar_pickles only as strings (an allow-list of pickled classes).
    assert offenders == [], offenders
