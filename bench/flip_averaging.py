"""Flip averaging: test accuracy of one configuration with and without averaging over mirrors.

Trains a space's configuration (its defaults, or --set name=value overrides) on the search-quality
protocol's training + validation images (12,000, seed 0) for --epochs epochs, then scores the
10,000 local test images with the trained model alone and with spaces.inference's flip averaging.

    .venv/bin/python bench/flip_averaging.py --epochs 26                # fast defaults, ~4 min
    .venv/bin/python bench/flip_averaging.py --epochs 30 --set width=48
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402
import numpy as np  # noqa: E402
from search_quality import DEFAULT_DATA, protocol_splits  # noqa: E402

from search import SearchConfig  # noqa: E402
from search.hardware import choose_acceleration  # noqa: E402
from search.pipeline import make_dataset  # noqa: E402
from search.run import data_spec  # noqa: E402
from spaces import get_space, list_spaces  # noqa: E402
from spaces.inference import inference_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="fast", choices=list_spaces())
    parser.add_argument("--epochs", type=int, default=26)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a hyper-parameter")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--cache-dir", default="~/.cache/hypercnn")
    args = parser.parse_args()

    splits = protocol_splits(args.data, args.cache_dir)
    x = np.concatenate([splits.x_train, splits.x_val])
    y = np.concatenate([splits.y_train, splits.y_val])
    config = SearchConfig(seed=0)
    spec = dataclasses.replace(data_spec(splits, config.batch_size), train_size=len(y))
    space = get_space(args.space)(spec, fit_verbose=2, precision=choose_acceleration(config).precision)
    hp = kt.HyperParameters()
    space.build(hp)  # registers the space's hyper-parameters with their defaults
    for item in args.set:
        name, value = item.split("=", 1)
        hp.values[name] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
    hp.values["tuner/epochs"] = args.epochs

    keras.utils.set_random_seed(0)
    model = space.build(hp)
    started = time.time()
    train = make_dataset(x, y, spec.num_classes, spec.batch_size, shuffle=True)
    space.fit(hp, model, train, epochs=args.epochs)
    seconds = time.time() - started
    scores = {}
    for averaged in (False, True):
        probabilities = inference_model(model, averaged).predict(splits.x_test, batch_size=512, verbose=0)
        scores[averaged] = float((probabilities.argmax(1) == splits.y_test).mean())
    print(
        f"{args.space} {' '.join(args.set) or 'defaults'}, {args.epochs} epochs on {len(y)} images "
        f"({seconds:.0f} s): test accuracy {100 * scores[False]:.2f} % alone, "
        f"{100 * scores[True]:.2f} % flip-averaged ({len(splits.y_test)} test images)"
    )


if __name__ == "__main__":
    main()
