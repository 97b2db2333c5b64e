"""Search quality at equal compute: HyperCNN against the tools a user would otherwise pick.

Protocol (fixed): the CIFAR-10 train zip from ../shared/data, seed 0, balanced and disjoint:
1,000 images/class to train, 200/class to validate, 1,000/class as the local test set. Each
system gets the same wall-clock budget (default 900 s) for everything that produces its final
model, on the same machine, one system at a time, each in its own process, all in one invocation
(one commit, one machine: every row carries both, with the date, the precision each system trained in
and the machine's float32 conv peak measured at the start). The test set is used once per system,
after its budget is spent.

What differs between the systems, by design: HyperCNN picks its own precision (mixed bfloat16 on
CPUs with native bf16, else float32) and kernels (spaces.kernels); the peers run their defaults
(float32, stock Keras).

    .venv/bin/pip install -e '.[bench]'          # the peers (AutoKeras)
    .venv/bin/python bench/search_quality.py     # ~1 hour: a table, and results/bench_search_quality.csv
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-train-jpeg.zip"
# default_only: HyperCNN's default configuration trained for the whole budget (the search turned off);
# HyperCNN with its search must beat it.
SYSTEMS = ("default_only", "hypercnn", "handwritten_cnn", "keras_tuner_hyperresnet", "autokeras")
HYPERCNN_SYSTEMS = ("default_only", "hypercnn")
PER_CLASS = {"train": 1000, "validation": 200, "test": 1000}


def protocol_splits(data: str, cache_dir: str):
    import numpy as np

    from search.data.sources import load_raw
    from search.data.split import split_data

    raw, _ = load_raw(data, cache_dir)
    classes = len(raw.class_names)
    splits = split_data(
        raw,
        seed=0,
        val_size=PER_CLASS["validation"] * classes,
        test_size=PER_CLASS["test"] * classes,
        train_size=PER_CLASS["train"] * classes,
    )
    for name, labels in (("train", splits.y_train), ("validation", splits.y_val), ("test", splits.y_test)):
        counts = set(np.bincount(labels).tolist())
        assert counts == {PER_CLASS[name]}, f"{name} split is not balanced: {counts}"
    return splits


class Deadline:
    """A Keras callback factory: stop (or abort the search) when the budget is spent."""

    def __init__(self, seconds: float) -> None:
        self.at = time.time() + seconds

    def left(self) -> float:
        return self.at - time.time()

    def stopper(self, abort_search: bool = False):
        import keras
        import keras_tuner as kt

        deadline = self

        class StopAtDeadline(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if time.time() >= deadline.at:
                    self.model.stop_training = True
                    if abort_search:  # KerasTuner re-raises FatalError: the search ends here
                        raise kt.errors.FatalError("time budget spent")

        return StopAtDeadline()


def run_hypercnn(
    splits, data: str, cache_dir: str, budget: float, out: Path, sampler: str, seed: int, search: bool
) -> dict:
    """`hypercnn run --time-budget`: the program splits the budget itself (search.plan)."""
    import pandas as pd

    from search import SearchConfig
    from search.job import run_job
    from search.plan import MAX_SEARCH_SHARE

    config = SearchConfig.create(
        data=data,
        out=str(out / "run"),
        overwrite=True,
        cache_dir=cache_dir,
        seed=seed,
        split_seed=0,  # one split for every system and seed
        train_size=len(splits.y_train),
        val_size=len(splits.y_val),
        test_size=len(splits.y_test),
        sampler=sampler,
        progress="epoch",
    )
    # 5 s of the budget left for the process to start and exit.
    report = run_job(config, budget - 5, max_search_share=MAX_SEARCH_SHARE if search else 0.0)
    trials = pd.read_csv(Path(config.out) / "trials.csv")
    metrics = json.loads((Path(config.out) / "report" / "metrics.json").read_text())
    env = json.loads((Path(config.out) / "env.json").read_text())
    return {
        "precision": env["hardware"]["precision"],
        "test_accuracy": report.test_accuracy,
        "val_accuracy": metrics["best_val_accuracy"],
        "trials": len(trials),
        "epochs": int(trials["epochs_trained"].fillna(0).sum()) + metrics["retrain_epochs"],
        "search_seconds": round(float(trials["seconds"].fillna(0).sum()), 1),
    }


def run_handwritten_cnn(splits, budget: float) -> dict:
    """The classic CIFAR-10 Keras CNN: conv-pool-dropout with L2, Adam, best-validation weights kept."""
    import keras
    import numpy as np
    from keras import layers

    deadline = Deadline(budget)
    keras.utils.set_random_seed(0)
    l2 = keras.regularizers.L2(1e-4)
    model = keras.Sequential([keras.Input((32, 32, 3))])
    for filters in (32, 64, 128):
        model.add(layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_regularizer=l2))
        model.add(layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_regularizer=l2))
        model.add(layers.MaxPooling2D())
        model.add(layers.Dropout(0.25))
    model.add(layers.Flatten())
    model.add(layers.Dense(256, activation="relu", kernel_regularizer=l2))
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(10, activation="softmax"))
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])

    best = {"val": -1.0, "weights": None}

    class KeepBest(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs["val_accuracy"] > best["val"]:
                best.update(val=logs["val_accuracy"], weights=self.model.get_weights())

    x = splits.x_train.astype("float32") / 255
    y = keras.utils.to_categorical(splits.y_train, 10)
    x_val = splits.x_val.astype("float32") / 255
    y_val = keras.utils.to_categorical(splits.y_val, 10)
    history = model.fit(
        x,
        y,
        batch_size=64,
        epochs=10_000,
        validation_data=(x_val, y_val),
        callbacks=[deadline.stopper(), KeepBest()],
        verbose=2,
    )
    model.set_weights(best["weights"])
    predicted = model.predict(splits.x_test.astype("float32") / 255, verbose=0).argmax(1)
    return {
        "test_accuracy": float(np.mean(predicted == splits.y_test)),
        "val_accuracy": best["val"],
        "trials": 1,
        "epochs": len(history.epoch),
    }


def run_keras_tuner_hyperresnet(splits, budget: float, out: Path) -> dict:
    """Stock KerasTuner: Hyperband over HyperResNet, max_epochs 9, factor 3, stopped at the budget."""
    import keras
    import keras_tuner as kt
    import numpy as np

    deadline = Deadline(budget)
    tuner = kt.Hyperband(
        kt.applications.HyperResNet(input_shape=(32, 32, 3), classes=10),
        objective="val_accuracy",
        max_epochs=9,
        factor=3,
        seed=0,
        directory=str(out),
        project_name="hyperresnet",
        overwrite=True,
    )
    x = splits.x_train.astype("float32") / 255
    y = keras.utils.to_categorical(splits.y_train, 10)
    validation = (splits.x_val.astype("float32") / 255, keras.utils.to_categorical(splits.y_val, 10))
    with contextlib.suppress(kt.errors.FatalError):  # the deadline ends the search
        tuner.search(
            x, y, validation_data=validation, callbacks=[deadline.stopper(abort_search=True)], verbose=2
        )
    done = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    if not done:
        return {
            "trials": len(tuner.oracle.trials),
            "epochs": 0,
            "note": "no trial finished within the budget",
        }
    best_trial = tuner.oracle.get_best_trials(1)[0]
    model = tuner.load_model(best_trial)
    predicted = model.predict(splits.x_test.astype("float32") / 255, verbose=0).argmax(1)
    epochs = sum(
        t.hyperparameters.values.get("tuner/epochs", 0)
        - t.hyperparameters.values.get("tuner/initial_epoch", 0)
        for t in done
    )
    return {
        "test_accuracy": float(np.mean(predicted == splits.y_test)),
        "val_accuracy": float(best_trial.score),
        "trials": len(tuner.oracle.trials),
        "epochs": int(epochs),
    }


def run_autokeras(splits, budget: float, out: Path) -> dict:
    import numpy as np

    try:
        import autokeras as ak
    except ImportError as exc:
        return {"note": f"AutoKeras is not installed ({exc}); pip install -e '.[bench]'"}
    import keras_tuner as kt

    _make_autokeras_shapes_python_ints(ak)
    deadline = Deadline(budget)
    classifier = ak.ImageClassifier(max_trials=100, overwrite=True, directory=str(out), seed=0)
    try:
        classifier.fit(
            splits.x_train,
            splits.y_train,
            validation_data=(splits.x_val, splits.y_val),
            epochs=20,
            callbacks=[deadline.stopper(abort_search=True)],
            verbose=2,
        )
        model = classifier.export_model()
    except kt.errors.FatalError:
        done = [t for t in classifier.tuner.oracle.trials.values() if t.status == "COMPLETED"]
        if not done:
            return {
                "trials": len(classifier.tuner.oracle.trials),
                "note": "no trial finished within the budget",
            }
        model = classifier.tuner.get_best_models(1)[0]
    best_trial = classifier.tuner.oracle.get_best_trials(1)[0]
    # AutoKeras's objective is val_loss: read the trial's validation accuracy, not its score.
    val_accuracy = (
        best_trial.metrics.get_last_value("val_accuracy")
        if best_trial.metrics.exists("val_accuracy")
        else None
    )
    probabilities = model.predict(splits.x_test, verbose=0)
    predicted = np.asarray(probabilities).argmax(1)
    return {
        "test_accuracy": float(np.mean(predicted == splits.y_test)),
        "val_accuracy": None if val_accuracy is None else float(val_accuracy),
        "trials": len(classifier.tuner.oracle.trials),
    }


def _make_autokeras_shapes_python_ints(ak) -> None:
    """AutoKeras 3.0 passes numpy integers as layer sizes (Dense(units=np.int64(10))), which
    Keras 3.15 rejects; cast the shapes it records to Python ints so the peer can run at all."""
    original = ak.graph.Graph.set_io_shapes

    def set_io_shapes(self, shapes):
        original(self, shapes)
        as_ints = lambda shape: tuple(None if d is None else int(d) for d in shape)  # noqa: E731
        for node in self.inputs:
            node.shape = as_ints(node.shape)
        for node in self.outputs:
            node.in_blocks[0].shape = as_ints(node.in_blocks[0].shape)

    ak.graph.Graph.set_io_shapes = set_io_shapes


def run_one(
    system: str, data: str, cache_dir: str, budget: float, out: Path, sampler: str, seed: int
) -> dict:
    splits = protocol_splits(data, cache_dir)  # decoded once into the cache before timing starts
    started = time.time()
    if system in HYPERCNN_SYSTEMS:
        result = run_hypercnn(
            splits, data, cache_dir, budget, out, sampler, seed, search=system == "hypercnn"
        )
    elif system == "handwritten_cnn":
        result = run_handwritten_cnn(splits, budget)
    elif system == "keras_tuner_hyperresnet":
        result = run_keras_tuner_hyperresnet(splits, budget, out)
    else:
        result = run_autokeras(splits, budget, out)
    result["wall_seconds"] = round(time.time() - started, 1)
    if system not in HYPERCNN_SYSTEMS:
        result["precision"] = "float32"  # the peers' default: Keras's global policy, untouched
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--budget", type=float, default=900.0, help="seconds per system")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--cache-dir", default="~/.cache/hypercnn")
    parser.add_argument("--work", default=str(ROOT / "results" / "bench_search_quality"))
    parser.add_argument("--output", default=str(ROOT / "results" / "bench_search_quality.csv"))
    parser.add_argument("--samplers", default="random", help="HyperCNN's samplers to run: random,model")
    parser.add_argument("--seeds", default="0", help="HyperCNN's search seeds (one split): e.g. 0,1,2")
    parser.add_argument(
        "--default-seeds",
        default="",
        help="default_only's training seeds (default: --seeds, so both means are over the same seeds)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one system in this process
    parser.add_argument("--sampler", default="random", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work)
    if args.one:
        from search.quiet import load_keras_backend

        load_keras_backend()
        out = work / f"{args.one}-{args.sampler}-seed{args.seed}"
        out.mkdir(parents=True, exist_ok=True)
        result = run_one(args.one, args.data, args.cache_dir, args.budget, out, args.sampler, args.seed)
        (out / "result.json").write_text(json.dumps(result, indent=2))
        return

    import pandas as pd
    from machine import machine_row, measure_conv_peak, merge_rows

    from search.quiet import load_keras_backend

    load_keras_backend()
    protocol_splits(args.data, args.cache_dir)  # fill the decode cache once, outside every budget
    peak, _ = measure_conv_peak("float32")
    machine = machine_row(peak, precision="")
    print(f"machine: {machine['machine']}; commit {machine['commit']}", flush=True)
    runs = []
    for system in args.systems.split(","):
        if system == "hypercnn":
            runs += [
                (system, sampler, int(seed))
                for sampler in args.samplers.split(",")
                for seed in args.seeds.split(",")
            ]
        elif system == "default_only":
            # Its own seed noise is as large as HyperCNN's (one training run per seed), so one seed
            # against HyperCNN's mean over three compares a draw with an average.
            runs += [(system, "", int(seed)) for seed in (args.default_seeds or args.seeds).split(",")]
        else:
            runs.append((system, "", 0))
    rows = []
    for system, sampler, seed in runs:
        name = f"{system}-{sampler or 'random'}-seed{seed}"
        print(f"=== {name}: {args.budget:.0f} s budget", flush=True)
        (work / name / "result.json").unlink(missing_ok=True)
        started = time.time()
        process = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                system,
                "--sampler",
                sampler or "random",
                "--seed",
                str(seed),
                "--data",
                args.data,
                "--budget",
                str(args.budget),
                "--cache-dir",
                args.cache_dir,
                "--work",
                str(work),
            ],
        )
        result_file = work / name / "result.json"
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
        if process.returncode != 0 and "note" not in result:
            result["note"] = f"exited with status {process.returncode}"
        result.update(
            system=system,
            sampler=sampler,
            seed=str(seed) if system in HYPERCNN_SYSTEMS else "",
            process_seconds=round(time.time() - started, 1),
        )
        rows.append(result)
    # Over several seeds, one more row per sampler and for default_only: the mean, with the spread
    # (standard deviation).
    for system, sampler in [("hypercnn", s) for s in args.samplers.split(",")] + [("default_only", "")]:
        seeds = [
            r for r in rows if r["system"] == system and r["sampler"] == sampler and r.get("test_accuracy")
        ]
        if len(seeds) > 1:
            accuracies = pd.Series([r["test_accuracy"] for r in seeds])
            rows.append(
                {
                    "system": system,
                    "sampler": sampler,
                    "seed": "mean",
                    "test_accuracy": round(float(accuracies.mean()), 4),
                    "test_accuracy_spread": round(float(accuracies.std()), 4),
                    "val_accuracy": float(pd.Series([r["val_accuracy"] for r in seeds]).mean()),
                    "trials": float(pd.Series([r["trials"] for r in seeds]).mean()),
                    "precision": seeds[0].get("precision"),
                }
            )
    columns = [
        "run",
        "system",
        "sampler",
        "seed",
        "test_accuracy",
        "test_accuracy_spread",
        "val_accuracy",
        "trials",
        "epochs",
        "search_seconds",
        "wall_seconds",
        "process_seconds",
        "precision",
        "note",
    ]
    table = pd.DataFrame(rows)
    table["run"] = [
        "-".join(str(p) for p in (r["system"], r.get("sampler"), r.get("seed"), int(args.budget)) if p != "")
        for r in rows
    ]
    table = table.reindex(columns=columns)
    table["budget_seconds"] = args.budget
    for column, value in machine.items():
        if column != "precision":
            table[column] = value
    target = Path(args.output)
    # A partial re-run replaces its systems' rows; it keeps the others only from the same commit
    # and machine, so that every table compares systems measured side by side.
    table = merge_rows(target, table, key="run")
    table = table.sort_values(
        ["budget_seconds", "system", "sampler", "seed"],
        key=lambda c: c.map(SYSTEMS.index) if c.name == "system" else c.astype(str),
    ).reset_index(drop=True)
    print(table.drop(columns=["command", "machine"]).to_string(index=False))
    table.to_csv(target, index=False)
    print(f"written: {target}")


if __name__ == "__main__":
    main()
