"""Flip averaging: is averaging each image's and its mirror's predictions worth shipping?

Decided on validation data only: trains a space's configuration (its defaults, or --set name=value
overrides) on the search-quality protocol's 10,000 training images (seed 0) for --epochs epochs, then
scores the 2,000 validation images with the trained model alone and flip-averaged. The local test
images are never looked at. Writes results/bench_flip_averaging.csv (with commit and machine).

    .venv/bin/python bench/flip_averaging.py --epochs 26                # fast defaults
    .venv/bin/python bench/flip_averaging.py --epochs 30 --set width=48
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

from search.quiet import load_keras_backend  # noqa: E402

load_keras_backend()

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402
import pandas as pd  # noqa: E402
from machine import machine_row, measure_conv_peak, merge_rows  # noqa: E402
from search_quality import DEFAULT_DATA, protocol_splits  # noqa: E402

from search import SearchConfig  # noqa: E402
from search.hardware import choose_acceleration  # noqa: E402
from search.pipeline import make_dataset  # noqa: E402
from search.run import data_spec  # noqa: E402
from spaces import get_space, list_spaces  # noqa: E402
from spaces.inference import inference_model  # noqa: E402
from spaces.kernels import select_kernels  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="fast", choices=list_spaces())
    parser.add_argument("--epochs", type=int, default=26)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a hyper-parameter")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--cache-dir", default="~/.cache/hypercnn")
    parser.add_argument("--output", default=str(ROOT / "results" / "bench_flip_averaging.csv"))
    args = parser.parse_args()

    peak, _ = measure_conv_peak("float32")
    splits = protocol_splits(args.data, args.cache_dir)
    config = SearchConfig(seed=0)
    precision = choose_acceleration(config).precision
    spec = data_spec(splits, config.batch_size)
    space = get_space(args.space)(
        spec, fit_verbose=2, precision=precision, kernels=select_kernels(precision, args.cache_dir)
    )
    hp = kt.HyperParameters()
    space.build(hp)  # registers the space's hyper-parameters with their defaults
    for item in args.set:
        name, value = item.split("=", 1)
        hp.values[name] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
    hp.values["tuner/epochs"] = args.epochs

    keras.utils.set_random_seed(0)
    model = space.build(hp)
    started = time.time()
    train = make_dataset(splits.x_train, splits.y_train, spec.num_classes, spec.batch_size, shuffle=True)
    space.fit(hp, model, train, epochs=args.epochs)
    seconds = time.time() - started
    scores = {}
    for averaged in (False, True):
        probabilities = inference_model(model, averaged).predict(splits.x_val, batch_size=512, verbose=0)
        scores[averaged] = float((probabilities.argmax(1) == splits.y_val).mean())
    configuration = " ".join(args.set) or "defaults"
    print(
        f"{args.space} {configuration}, {args.epochs} epochs on {len(splits.y_train)} images "
        f"({seconds:.0f} s): validation accuracy {100 * scores[False]:.2f} % alone, "
        f"{100 * scores[True]:.2f} % flip-averaged ({len(splits.y_val)} validation images)"
    )
    row = {
        "configuration": f"{args.space} {configuration}, {args.epochs} epochs",
        "train_images": len(splits.y_train),
        "validation_images": len(splits.y_val),
        "val_accuracy_alone": round(scores[False], 4),
        "val_accuracy_flip_averaged": round(scores[True], 4),
        "gain_points": round(100 * (scores[True] - scores[False]), 2),
        "train_seconds": round(seconds, 1),
        **machine_row(peak, precision),
    }
    target = Path(args.output)
    table = merge_rows(target, pd.DataFrame([row]), key="configuration")
    table.to_csv(target, index=False)
    print(f"written: {target}")


if __name__ == "__main__":
    main()
