"""Which configuration to train when the budget fits only a few epochs: the warm-start portfolio's
evidence (spaces/fast.py reads its choices from this bench's CSV, results/bench_portfolio.csv).

Each candidate configuration is trained on the search-quality protocol's training split for the
time that `--default-epochs` epochs of the space's default take on this machine (its own epoch count
follows from its measured pace, and its schedule spans exactly those), then scored on the
validation split. The local test split is never read: what the product ships is decided here on
validation data only.

    .venv/bin/python bench/portfolio.py --default-epochs 6,20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

# Steps timed to measure a candidate's pace, after the first call (tracing) is left out.
PACE_STEPS = 48
# Configurations under study beside the space's own default and portfolio (values the entry omits
# stay at the space's defaults).
STUDIED = {
    "fast": {
        "w32c1": {"width": 32, "convs_per_block": 1},
        "w48c1": {"width": 48, "convs_per_block": 1},
        "short_recipe": {"augment_crop": 2, "warmup_fraction": 0.05, "label_smoothing": 0.05},
        "w24": {"width": 24},
        "w16": {"width": 16},
        "lr0.2": {"sgd_nesterov_learning_rate": 0.2},
        "ls0.2": {"label_smoothing": 0.2},
        "bn0.8": {"bn_momentum": 0.8},
        "crop2": {"augment_crop": 2},
        "cutout": {"augment_cutout": 0.5},
        "w48": {"width": 48},
        "w48cutout": {"width": 48, "augment_cutout": 0.5},
        "w64c1": {"width": 64, "convs_per_block": 1},
        "w64": {"width": 64},
        "w64cutout": {"width": 64, "augment_cutout": 0.5},
        # The default plateaus at about 79.5 % validation from 30 to 80 default epochs in bfloat16
        # (results/bench_portfolio_bf16*.csv) while regularized wider nets keep climbing: does a
        # stronger weight decay lift it at its own cost?
        "wd1e-3": {"weight_decay": 1e-3},
        "wd2e-3": {"weight_decay": 2e-3},
        # Dropout before the head, the regularizer W48_GELU has and the default lacks.
        "dropout0.1": {"dropout": 0.1},
        "dropout0.2": {"dropout": 0.2},
    }
}


def candidates(space: str) -> dict[str, dict]:
    """The default ({}), the space's portfolio, and the configurations under study."""
    from spaces import get_space

    cls = get_space(space)
    found = {"default": {}}
    for index, entry in enumerate(cls.portfolio, start=1):
        found[f"portfolio{index}"] = dict(entry)
    for name, entry in STUDIED.get(space, {}).items():
        found[name] = dict(entry)
    if space == "fast":
        from spaces.fast import W48_GELU, w48_gelu_recipe_on_relu

        # The portfolio's W48_GELU under the name it was measured by, then its recipe on a wider ReLU net.
        found["w48gelu"] = dict(W48_GELU)
        found["w64relu35"] = w48_gelu_recipe_on_relu(64)
        # Its recipe on ReLU nets at the default's width (its cost) and at widths 24 (the float32 budget
        # pick 'w24-recipe') and 16 (cheaper): for budgets too short for w48gelu.
        for width in (32, 24, 16):
            found[f"w{width}recipe"] = w48_gelu_recipe_on_relu(width)
        # One conv per block: in mixed bfloat16 width 24 costs far more than its FLOPs (channel counts
        # not multiples of 16) while these run at about their FLOPs' share: the cheaper nets there.
        for width in (32, 64):
            found[f"w{width}c1recipe"] = {**w48_gelu_recipe_on_relu(width), "convs_per_block": 1}
    return found


def build(hypermodel, values: dict, epochs: int):
    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.values.update(values)
    hp.values["tuner/epochs"] = epochs
    return hp, hypermodel.build(hp)


def measure_pace(hypermodel, values: dict, train) -> float:
    """Seconds per training step, steady state (the first steps, which trace, are left out): the
    median interval between calls, since one slow call (another process waking) skews a mean; with
    the mean, label smoothing 0.2 on the default's net measured 1.22x the default's pace (bf16_36_wd)."""
    import itertools
    import statistics

    import keras

    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter())
            if len(times) * self.model.steps_per_execution >= PACE_STEPS + 16:
                self.model.stop_training = True

    hp, model = build(hypermodel, values, epochs=10)
    hypermodel.fit(hp, model, train, epochs=1, callbacks=[Clock()], verbose=0)
    per_call = statistics.median(later - earlier for earlier, later in itertools.pairwise(times))
    return per_call / model.steps_per_execution


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-train-jpeg.zip"))
    parser.add_argument("--space", default="fast")
    parser.add_argument("--default-epochs", default="6,20", help="budgets, in epochs of the default")
    parser.add_argument("--candidates", default="", help="names to run (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (a second seed: the noise)")
    parser.add_argument("--cache-dir", default="~/.cache/hypercnn")
    parser.add_argument("--output", default=str(ROOT / "results" / "bench_portfolio.csv"))
    args = parser.parse_args()

    from protocol import protocol_training

    trainer = protocol_training(args.data, args.space, args.cache_dir, "/tmp/hypercnn-portfolio")
    import keras
    import pandas as pd
    from machine import merge_rows

    spec, hypermodel, machine = trainer.spec, trainer.hypermodel, trainer.machine
    train = trainer.dataset(training=True, seed=args.seed)
    validation = trainer.dataset(training=False)
    chosen = candidates(args.space)
    if args.candidates:
        chosen = {name: chosen[name] for name in args.candidates.split(",")}
    # Each pace is the faster of two rounds: the first model timed ran 5 to 8 % slower than the same
    # net timed later (the process still warming up), which skewed every cost against the default.
    paces = {name: measure_pace(hypermodel, values, train) for name, values in chosen.items()}
    for name, values in chosen.items():
        paces[name] = min(paces[name], measure_pace(hypermodel, values, train))
    print("seconds per step: " + ", ".join(f"{n} {p:.3f}" for n, p in paces.items()), flush=True)
    rows = []
    for budget in [int(e) for e in args.default_epochs.split(",")]:
        seconds = budget * spec.steps_per_epoch * paces["default"]
        for name, values in chosen.items():
            epochs = max(1, round(seconds / (spec.steps_per_epoch * paces[name])))
            keras.utils.set_random_seed(args.seed)
            hp, model = build(hypermodel, values, epochs)
            started = time.time()
            history = hypermodel.fit(hp, model, train, epochs=epochs, validation_data=validation, verbose=0)
            wall = time.time() - started
            row = {
                "space": args.space,
                "candidate": name,
                "seed": args.seed,
                "default_epochs": budget,
                "epochs": epochs,
                "cost_vs_default": round(paces[name] / paces["default"], 3),
                "val_accuracy": round(float(history.history["val_accuracy"][-1]), 4),
                "train_seconds": round(wall, 1),
                "values": json.dumps(values, sort_keys=True),
            }
            print(row, flush=True)
            rows.append(row)
    table = pd.DataFrame(rows)
    # Seed 0's rows keep the names of the runs before seeds were a flag.
    table["run"] = [
        f"{r['space']}-{r['candidate']}-{r['default_epochs']}" + (f"-seed{r['seed']}" if r["seed"] else "")
        for r in rows
    ]
    for column, value in machine.items():
        table[column] = value
    target = Path(args.output)
    table = merge_rows(target, table, key="run")
    table.to_csv(target, index=False)
    print(table[["candidate", "default_epochs", "epochs", "cost_vs_default", "val_accuracy"]].to_string())
    print(f"written: {target}")


if __name__ == "__main__":
    main()
