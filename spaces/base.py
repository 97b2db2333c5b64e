"""SpaceHyperModel: the KerasTuner HyperModel every space subclasses.

A space only says how features are computed (``build_features``); the input handling, the
classifier head, compilation and fitting are shared so every space gets the same recipe.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import keras
import keras_tuner as kt
from keras import layers

from search.plan import BudgetPick
from spaces import layers as spaces_layers
from spaces import recipe
from spaces.augment_ops import Augmentation, TrainingAugmentation
from spaces.kernels import Kernels


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What a space needs to know about the data to build a model for it."""

    num_classes: int
    input_shape: tuple[int, int, int] = (32, 32, 3)
    # Per-channel pixel statistics of the training split (0..255 scale).
    mean: tuple[float, float, float] = (125.3, 123.0, 113.9)
    std: tuple[float, float, float] = (63.0, 62.1, 66.7)
    # How many images one epoch sees, and in what batches: the lr schedule is counted in steps.
    train_size: int = 50_000
    batch_size: int = 128
    # Epochs a model is built for when KerasTuner gives none (e.g. building outside a search).
    default_epochs: int = 10

    @property
    def steps_per_epoch(self) -> int:
        return recipe.steps_per_epoch(self.train_size, self.batch_size)


class SpaceHyperModel(kt.HyperModel):
    """Builds uint8-in, probabilities-out Keras models; subclasses define ``build_features``."""

    name: str = "base"
    description: str = ""
    # False: the space puts L2 on its kernels itself, so the optimizer adds no decay on top.
    decoupled_decay: bool = True
    # The search's first configurations after the default (values it omits stay at their defaults):
    # known to train well at other sizes and budgets, chosen from earlier benchmark runs.
    portfolio: tuple[dict[str, Any], ...] = ()
    # Where the budget fits too few epochs of the default to search (search.plan), the configuration
    # trained instead, by the epochs that fit; measured by bench/portfolio.py.
    budget_picks: tuple[BudgetPick, ...] = ()

    def __init__(
        self,
        data: DataSpec,
        jit_compile: bool = False,
        fit_verbose: int | str = "auto",
        plain_keras: bool = False,
        precision: str | None = None,
        kernels: Kernels | None = None,
        extra_metrics: Callable[[], list] | None = None,
    ) -> None:
        super().__init__(name=self.name, tunable=True)
        self.data = data
        self.jit_compile = jit_compile
        # A Keras dtype policy ("mixed_bfloat16", ...) every build() applies; None: the global one.
        self.precision = precision
        self.fit_verbose = fit_verbose
        # False (HyperCNN's path): uint8 input, fit() augments uint8 batches in the tf.data
        # pipeline, the kernels spaces.kernels chose for this machine. True: the same network as a
        # plain Keras script builds it (float32 input, augmentation layers in the model, stock
        # layers and optimizers), for the throughput bench and the equal-accuracy test.
        self.plain_keras = plain_keras
        self.kernels = Kernels.stock() if plain_keras else (kernels or Kernels.for_backend())
        # Fresh metric objects per build (e.g. macro F1 when the search ranks by it).
        self.extra_metrics = extra_metrics or list

    def build_features(self, hp: kt.HyperParameters, x: keras.KerasTensor) -> keras.KerasTensor:
        raise NotImplementedError

    def augmentation(self, hp: kt.HyperParameters) -> Augmentation:
        """The recipe's augmentation; override for data whose mirror image is another class."""
        return recipe.augmentation(hp, self.data.mean)

    def batch_norm(self, hp: kt.HyperParameters) -> Callable[[str], layers.Layer]:
        """A factory of the space's batch-norm layers: momentum from the recipe, kernel from the path."""
        momentum = recipe.bn_momentum(hp)
        return lambda name: spaces_layers.batch_norm(momentum, name, kernel=self.kernels.batch_norm)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        if self.precision:
            # Set per build, not once: KerasTuner clears the Keras session before every trial's
            # build, and that resets the global dtype policy to float32.
            keras.mixed_precision.set_global_policy(self.precision)
        augmentation = self.augmentation(hp)
        input_dtype = "float32" if self.plain_keras else "uint8"
        images = keras.Input(shape=self.data.input_shape, dtype=input_dtype, name="image")
        x = images
        if not self.plain_keras and self.kernels.augmentation == "step" and augmentation.active:
            x = TrainingAugmentation(**dataclasses.asdict(augmentation), name="augment")(x)
        x = recipe.standardize(x, self.data.mean, self.data.std, kernel=self.kernels.normalization)
        if self.plain_keras:
            x = recipe.keras_augmentation(augmentation, x)
        features = self.build_features(hp, x)
        # float32 head: softmax in float16 under mixed precision loses probability mass.
        outputs = layers.Dense(
            self.data.num_classes, activation="softmax", dtype="float32", name="probabilities"
        )(features)
        model = keras.Model(images, outputs, name=self.name)
        # Hyperband says how many epochs this trial trains in total; the schedule spans exactly those.
        epochs = int(hp.values.get("tuner/epochs", self.data.default_epochs))
        recipe.compile_model(
            hp,
            model,
            epochs,
            self.data.steps_per_epoch,
            self.jit_compile,
            self.decoupled_decay,
            plain_keras=self.plain_keras,
            optimizer_kernel=self.kernels.optimizer,
            extra_metrics=self.extra_metrics(),
            batch_size=self.data.batch_size,
        )
        return model

    def fit(
        self, hp: kt.HyperParameters, model: keras.Model, x: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        kwargs["verbose"] = self.fit_verbose
        if self.kernels.data == "device":
            from search.pipeline import ArrayBatches
            from spaces.device_loop import fit_on_device

            # HyperCNN's own batches go to the device; anything else (arrays a user passes) takes
            # Keras's loop.
            validation = kwargs.get("validation_data")
            if (
                isinstance(x, ArrayBatches)
                and not args
                and (validation is None or isinstance(validation, ArrayBatches))
            ):
                return fit_on_device(model, x, **kwargs)
        augments_in_pipeline = (
            not self.plain_keras and self.kernels.augmentation == "pipeline" and self.augmentation(hp).active
        )
        # A tf.data dataset exists only where TensorFlow is already imported.
        tf = sys.modules.get("tensorflow")
        if tf is not None and isinstance(x, tf.data.Dataset):
            kwargs["shuffle"] = False  # the tf.data pipeline already reshuffles every epoch
            if augments_in_pipeline:
                from spaces.augment import augment_dataset  # the TensorFlow path (spaces.kernels)

                x = augment_dataset(x, self.augmentation(hp))
        elif augments_in_pipeline:
            raise TypeError(
                "fit() augments batched uint8 tf.data datasets (search.pipeline.make_dataset); "
                "pass one, or build the space with plain_keras=True to fit on arrays"
            )
        return model.fit(x, *args, **kwargs)


def describe_space(cls: type[SpaceHyperModel]) -> list[dict[str, Any]]:
    """The space's hyper-parameters (conditional ones too): name, kind, range or choices, default."""
    with tempfile.TemporaryDirectory() as scratch:
        # KerasTuner's own exploration of the space: it builds until every conditional scope opened.
        tuner = kt.RandomSearch(
            cls(DataSpec(num_classes=10)), objective="val_accuracy", max_trials=1, directory=scratch
        )
        space = tuner.oracle.get_space().space
    rows = []
    for param in space:
        config = param.get_config()
        kind = type(param).__name__
        if kind == "Choice":
            values = ", ".join(str(v) for v in config["values"])
            allowed = f"{{{values}}}"
        elif kind in ("Int", "Float"):
            step = f" step {config['step']}" if config.get("step") else ""
            scale = " log" if config.get("sampling") == "log" else ""
            allowed = f"{config['min_value']} .. {config['max_value']}{step}{scale}"
        elif kind == "Boolean":
            allowed = "{True, False}"
        else:
            allowed = "fixed"
        when = " and ".join(
            f"{c.get_config()['name']} = {'/'.join(map(str, c.get_config()['values']))}"
            for c in param.conditions
        )
        rows.append(
            {"name": param.name, "kind": kind, "allowed": allowed, "default": param.default, "when": when}
        )
    return rows
