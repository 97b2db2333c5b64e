"""Does an exponential moving average of the weights help the final training at equal time? (#15 item 4)

The space's default is trained on the search-quality protocol's training split for `--epochs` epochs
(its learning-rate schedule spans exactly those, as the final training's does), once per EMA momentum
(0: no average, the product today) and seed. Keras's own optimizer EMA (`use_ema`) keeps the average;
fit ends by copying it into the weights. Every arm then gets its batch-norm statistics recomputed under
its final weights, as the final training does, and is scored on the validation split. The local test
split is never read: whether the product ships EMA is decided here on validation data only.

    .venv/bin/python bench/ema.py --epochs 36 --momenta 0,0.99,0.999 --seeds 0,1    # ~25 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-train-jpeg.zip"))
    parser.add_argument("--space", default="fast")
    parser.add_argument("--epochs", type=int, default=36, help="the final training's length, in epochs")
    parser.add_argument("--momenta", default="0,0.99,0.999", help="EMA momenta; 0 is no average")
    parser.add_argument("--seeds", default="0,1", help="training seeds (more than one: the noise)")
    parser.add_argument("--cache-dir", default="~/.cache/hypercnn")
    parser.add_argument("--output", default=str(ROOT / "results" / "bench_ema.csv"))
    args = parser.parse_args()

    from protocol import protocol_training

    trainer = protocol_training(args.data, args.space, args.cache_dir, "/tmp/hypercnn-ema")
    import keras
    import keras_tuner as kt
    import pandas as pd
    from machine import merge_rows

    from spaces.batch_stats import recompute_batch_norm_statistics

    hypermodel, splits, batch_size = trainer.hypermodel, trainer.splits, trainer.config.batch_size
    validation = trainer.dataset(training=False)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        train = trainer.dataset(training=True, seed=seed)
        for momentum in [float(m) for m in args.momenta.split(",")]:
            keras.utils.set_random_seed(seed)
            hp = kt.HyperParameters()
            hp.values["tuner/epochs"] = args.epochs
            model = hypermodel.build(hp)
            if momentum > 0:
                # The same optimizer (class, schedule, decay) with the average, compiled as before; the
                # space builds its optimizer eagerly, so the average cannot be switched on in place.
                built = model.optimizer
                config_ema = {**built.get_config(), "use_ema": True, "ema_momentum": momentum}
                model.compile(
                    optimizer=type(built).from_config(config_ema),
                    loss=model.loss,
                    metrics=["accuracy"],
                    jit_compile=model.jit_compile,
                    steps_per_execution=model.steps_per_execution,
                )
                model.optimizer.build(model.trainable_variables)
            started = time.time()
            hypermodel.fit(hp, model, train, epochs=args.epochs, verbose=0)
            wall = time.time() - started
            recompute_batch_norm_statistics(model, splits.x_train, batch_size, seed=seed)
            scores = model.evaluate(validation, verbose=0, return_dict=True)
            row = {
                "space": args.space,
                "ema_momentum": momentum,
                "seed": seed,
                "epochs": args.epochs,
                "val_accuracy": round(float(scores["accuracy"]), 4),
                "train_seconds": round(wall, 1),
                "run": f"{args.space}-ema{momentum:g}-{args.epochs}-seed{seed}",
            }
            print(row, flush=True)
            rows.append(row)
    table = pd.DataFrame(rows)
    for column, value in trainer.machine.items():
        table[column] = value
    table["command"] = "python bench/ema.py " + " ".join(sys.argv[1:])
    target = Path(args.output)
    table = merge_rows(target, table, key="run")
    table.to_csv(target, index=False)
    summary = table.groupby("ema_momentum")["val_accuracy"].agg(["mean", "std", "count"])
    print(summary.to_string())
    print(f"written: {target}")


if __name__ == "__main__":
    main()
