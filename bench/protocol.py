"""One space's models trained on the search-quality protocol's splits, outside a search: what the
benches that decide shipped choices on validation data (bench/portfolio.py, bench/ema.py) share."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the bench imports Keras only once its backend is chosen (protocol_training)
    from search import SearchConfig
    from search.data.split import Splits
    from spaces.base import DataSpec, SpaceHyperModel


@dataclasses.dataclass
class ProtocolTraining:
    splits: Splits  # 10,000 training / 2,000 validation / 10,000 test images
    config: SearchConfig  # for the space, seed 0
    hypermodel: SpaceHyperModel
    machine: dict  # bench/machine.py's columns, the float32 conv peak measured now

    @property
    def spec(self) -> DataSpec:
        """The data spec the hypermodel's schedules are sized by."""
        return self.hypermodel.data

    @property
    def on_device(self) -> bool:
        """Whether the split lives on the device (spaces.kernels' choice)."""
        return self.hypermodel.kernels.data == "device"

    def dataset(self, training: bool, seed: int = 0):
        """Batches of the training split (shuffled and augmented with `seed`) or the validation split."""
        from search.pipeline import make_dataset

        splits = self.splits
        x, y = (splits.x_train, splits.y_train) if training else (splits.x_val, splits.y_val)
        classes = len(splits.class_names)
        return make_dataset(x, y, classes, self.config.batch_size, training, seed, self.on_device)


def protocol_training(data: str, space: str, cache_dir: str, out: str) -> ProtocolTraining:
    """The splits, the space's hypermodel as a search on this machine would build it, and the machine's
    row (printed, with the commit), ready to train."""
    from search.quiet import load_keras_backend

    load_keras_backend()
    from machine import machine_row, measure_conv_peak
    from search_quality import protocol_splits

    from search import SearchConfig
    from search.run import build_hypermodel, data_spec

    splits = protocol_splits(data, cache_dir)
    peak, _ = measure_conv_peak("float32")
    config = SearchConfig.create(data=data, out=out, space=space, seed=0)
    hypermodel = build_hypermodel(config, data_spec(splits, config.batch_size))
    machine = machine_row(peak, precision=hypermodel.precision or "float32")
    print(f"machine: {machine['machine']}; commit {machine['commit']}", flush=True)
    return ProtocolTraining(splits, config, hypermodel, machine)
