"""The training recipe every space shares, visible in one place.

Each knob is a KerasTuner hyper-parameter whose default is known to train well, so the first
trial of any search (all defaults) is already a good model. Knob -> why it helps at 32x32:

    augment_crop       pad-and-crop (random translation) by 2 or 4 pixels: cheap, and it always pays off
    augment_flip       fixed on: CIFAR objects are left/right symmetric, twice the data for free
    augment_cutout     erase a random patch: forces the net to use the whole object, not one cue
    label_smoothing    soft targets: better calibrated, less over-confident on 10 classes
    weight_decay       decoupled weight decay (in the optimizer, AdamW-style and for SGD alike)
    optimizer          SGD with Nesterov momentum (the CIFAR classic) or AdamW (forgiving of the lr)
    learning_rate      peak of the schedule at batch 128; searched on a log scale per optimizer, and
                       scaled to the batch size actually used (linearly for SGD, by its square root
                       for AdamW): the cnn default's 0.1 diverged at batch 8
    warmup_fraction    linear warm-up: large lrs with batch norm need a few hundred gentle steps first
    schedule           warm-up then cosine decay to zero over the epochs the trial trains
    bn_momentum        0.9, not Keras's 0.99: short trials need moving statistics that catch up fast
"""

from __future__ import annotations

import math
import weakref

import keras
import keras_tuner as kt
import numpy as np
from keras import layers, ops

from search import compat
from spaces import layers as spaces_layers
from spaces.augment_ops import CUTOUT_AREA, Augmentation

# The learning-rate range of each optimizer, and its known-good default.
LEARNING_RATES = {
    "sgd_nesterov": (0.01, 0.5, 0.1),
    "adamw": (1e-4, 1e-2, 2e-3),
}


def bn_momentum(hp: kt.HyperParameters) -> float:
    return hp.Choice("bn_momentum", [0.8, 0.9, 0.95], default=0.9)


def augmentation(hp: kt.HyperParameters, mean) -> Augmentation:
    """The augmentation knobs of this trial; applied to uint8 batches by spaces.augment (tf.data) or
    spaces.augment_ops (inside the training step).

    Flip and crop cannot be switched off by the search: augmentation pays off over a long
    training run but slows the first epochs, so Hyperband's 1-epoch trials would rank configurations
    without it first, and the retrained winner then overfits (measured on the search-quality bench:
    a winner without flip or crop reached 100 % training accuracy by epoch 11 of its retrain). A space
    for data whose mirror image is another class (digits, text) overrides SpaceHyperModel.augmentation.
    """
    return Augmentation(
        flip=hp.Fixed("augment_flip", True),
        crop=hp.Choice("augment_crop", [2, 4], default=4),  # pixels of padding to crop back from
        cutout=hp.Choice("augment_cutout", [0.0, 0.5], default=0.0),  # probability per image
        fill=tuple(int(round(value)) for value in mean),
    )


def standardize(images: keras.KerasTensor, mean, std, kernel: str = "fast") -> keras.KerasTensor:
    """uint8 pixels in, per-channel standardised floats out, with the training split's statistics.

    Living inside the model, the exported model takes raw uint8 images.
    """
    cls = spaces_layers.FastNormalization if kernel == "fast" else layers.Normalization
    return cls(mean=np.asarray(mean), variance=np.asarray(std) ** 2, name="normalize")(images)


def keras_augmentation(augmentation: Augmentation, x: keras.KerasTensor) -> keras.KerasTensor:
    """The same augmentation as Keras preprocessing layers inside the model: how a plain Keras
    script does it, kept for bench/throughput.py's plain path and the equal-accuracy test."""
    if augmentation.flip:
        x = layers.RandomFlip("horizontal", name="augment_flip")(x)
    if augmentation.crop:
        shift = augmentation.crop / x.shape[1]
        x = layers.RandomTranslation(shift, shift, fill_mode="reflect", name="augment_crop")(x)
    if augmentation.cutout:
        # fill 0 = the channel mean after standardisation, as in Cutout (DeVries & Taylor, 2017)
        x = layers.RandomErasing(
            factor=(augmentation.cutout, augmentation.cutout),
            scale=CUTOUT_AREA,
            fill_value=0.0,
            value_range=(-3, 3),
            name="augment_cutout",
        )(x)
    return x


@keras.saving.register_keras_serializable(package="hypercnn")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then cosine decay to zero at `total_steps`.

    The step is the optimizer's own counter: a promoted Hyperband trial whose optimizer state is
    restored continues from its place in the schedule instead of starting over. The length is a
    variable, not a constant baked into the traced training step: a promoted trial that goes on
    training its parent's model in memory stretches the schedule without retracing
    (``set_total_steps``).
    """

    def __init__(self, peak: float, warmup_fraction: float, total_steps: int) -> None:
        self.peak = float(peak)
        self.warmup_fraction = float(warmup_fraction)
        self.total_steps = keras.Variable(
            float(max(1, total_steps)), dtype="float32", trainable=False, name="schedule_total_steps"
        )
        # The value computed in each traced graph, per step variable (see __call__).
        self._traced: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def set_total_steps(self, total_steps: int) -> None:
        self.total_steps.assign(float(max(1, total_steps)))

    def __call__(self, step):
        # Keras's decoupled weight decay reads optimizer.learning_rate once per variable, and each
        # read calls the schedule: the fast space's default model traced 24 copies of it into its
        # training step (a fifth of the step's tracing time in a search). In a traced step,
        # compute it once and reuse it.
        if keras.backend.backend() != "tensorflow":
            return self._value(step)  # XLA's common-subexpression elimination merges the copies
        import tensorflow as tf  # the TensorFlow path only (spaces.kernels)

        if tf.executing_eagerly():
            return self._value(step)
        per_step = self._traced.setdefault(tf.compat.v1.get_default_graph(), {})
        if id(step) not in per_step:
            per_step[id(step)] = self._value(step)
        return per_step[id(step)]

    def _value(self, step):
        step = ops.cast(step, "float32")
        total = ops.convert_to_tensor(self.total_steps)
        warmup = ops.minimum(total - 1.0, ops.round(self.warmup_fraction * total))
        warming = self.peak * step / ops.maximum(warmup, 1.0)
        progress = ops.clip((step - warmup) / ops.maximum(total - warmup, 1.0), 0.0, 1.0)
        decaying = 0.5 * self.peak * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < warmup, warming, decaying)

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "warmup_fraction": self.warmup_fraction,
            "total_steps": int(self.total_steps.numpy()),
        }


def learning_rate_schedule(
    peak: float, warmup_fraction: float, epochs: int, steps_per_epoch: int
) -> WarmupCosine:
    """Warm-up then cosine to zero over exactly the epochs this trial trains."""
    return WarmupCosine(peak, warmup_fraction, epochs * steps_per_epoch)


def stretch_schedule(model: keras.Model, epochs: int, steps_per_epoch: int) -> None:
    """Make a compiled model's schedule end after `epochs` epochs (a promoted trial's new total)."""
    set_schedule_steps(model, epochs * steps_per_epoch)


def set_schedule_steps(model: keras.Model, total_steps: int) -> None:
    """Make a compiled model's schedule end at optimizer step `total_steps`."""
    schedule = compat.learning_rate_schedule(model.optimizer)
    if not isinstance(schedule, WarmupCosine):
        raise TypeError(f"expected a WarmupCosine schedule, got {type(schedule).__name__}")
    schedule.set_total_steps(total_steps)


def l2_regularizer(hp: kt.HyperParameters) -> keras.regularizers.Regularizer:
    """Classic L2 on kernels, for spaces that regularise in the loss rather than in the optimizer."""
    return keras.regularizers.L2(hp.Float("l2", 1e-6, 1e-3, sampling="log", default=1e-4))


# The batch size the learning-rate ranges and defaults are meant for.
REFERENCE_BATCH_SIZE = 128


def batch_size_scale(optimizer: str, batch_size: int) -> float:
    """The factor on a learning rate chosen for REFERENCE_BATCH_SIZE: linear for SGD (Goyal et al.,
    2017), square root for AdamW (Malladi et al., 2022). A searched value then means the same at any
    --batch-size, and a small batch does not diverge at a rate meant for a large one."""
    ratio = batch_size / REFERENCE_BATCH_SIZE
    return ratio if optimizer == "sgd_nesterov" else math.sqrt(ratio)


def make_optimizer(
    hp: kt.HyperParameters,
    epochs: int,
    steps_per_epoch: int,
    decoupled_decay: bool = True,
    kernel: str = "fused",
    batch_size: int = REFERENCE_BATCH_SIZE,
) -> keras.optimizers.Optimizer:
    """The trial's optimizer: on HyperCNN's path with TensorFlow's fused update kernels, the same
    arithmetic as Keras's own classes (spaces.optimizers), which the plain Keras path uses."""
    name = hp.Choice("optimizer", list(LEARNING_RATES), default="sgd_nesterov")
    # One range per optimizer, each active only with its optimizer (KerasTuner conditional scopes).
    for option, (low, high, default) in LEARNING_RATES.items():
        with hp.conditional_scope("optimizer", [option]):
            rate = hp.Float(f"{option}_learning_rate", low, high, sampling="log", default=default)
        if option == name:
            peak = rate
    warmup = hp.Float("warmup_fraction", 0.0, 0.3, step=0.05, default=0.15)
    weight_decay = (
        hp.Float("weight_decay", 1e-5, 5e-3, sampling="log", default=5e-4) if decoupled_decay else None
    )
    peak *= batch_size_scale(name, batch_size)
    schedule = learning_rate_schedule(peak, warmup, epochs, steps_per_epoch)
    sgd, adamw = keras.optimizers.SGD, keras.optimizers.AdamW
    if kernel == "fused":
        from spaces.optimizers import FusedAdamW, FusedSGD  # the TensorFlow path only (spaces.kernels)

        sgd, adamw = FusedSGD, FusedAdamW
    if name == "sgd_nesterov":
        # SGD's decoupled decay is scaled by the lr, matching the usual L2 strength at lr ~0.1.
        return sgd(schedule, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    # AdamW's decay is conventionally ~10x SGD's (0.05 vs 5e-4 at their usual lrs).
    return adamw(schedule, weight_decay=weight_decay * 10 if weight_decay else 0.0)


# Training steps run per call of the compiled step (Keras's steps_per_execution), for a model built to
# train at least MULTI_STEP_MIN_STEPS steps. One step per call costs a few ms of call overhead per step:
# 16 per call trained the resnet default 3.6 % faster (1,691 vs 1,633 img/s, 2 CPU cores), but the
# loop's heavier first trace costs ~0.25 s, repaid only by longer trials (a 1-epoch trial on 10,000
# images broke even).
STEPS_PER_EXECUTION = 16
MULTI_STEP_MIN_STEPS = 400


def steps_per_execution(total_steps: int) -> int:
    return STEPS_PER_EXECUTION if total_steps >= MULTI_STEP_MIN_STEPS else 1


def compile_model(
    hp: kt.HyperParameters,
    model: keras.Model,
    epochs: int,
    steps_per_epoch: int,
    jit_compile: bool,
    decoupled_decay: bool = True,
    plain_keras: bool = False,
    optimizer_kernel: str = "fused",
    extra_metrics: list | None = None,
    batch_size: int = REFERENCE_BATCH_SIZE,
) -> None:
    """Compiles the trial's model with the optimizer kernel spaces.kernels chose; HyperCNN's path
    (not `plain_keras`) also runs several steps per call for long trainings."""
    smoothing = hp.Float("label_smoothing", 0.0, 0.2, step=0.05, default=0.1)
    model.compile(
        optimizer=make_optimizer(hp, epochs, steps_per_epoch, decoupled_decay, optimizer_kernel, batch_size),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=smoothing),
        metrics=["accuracy", *(extra_metrics or [])],
        jit_compile=jit_compile,
        steps_per_execution=1 if plain_keras else steps_per_execution(epochs * steps_per_epoch),
    )
    # The optimizer's slots (momenta), made now and eagerly: left to the first training step, they
    # are created while it is traced, which added ~0.3 s to each new trial's first step; eagerly
    # they take 0.02-0.04 s (fast space, SGD and AdamW).
    model.optimizer.build(model.trainable_variables)
    # Likewise the accuracy metric's variables: Keras makes them in the first training step, and a
    # tf.function whose first trace creates variables traces itself a second time. Made now (1 ms),
    # each new trial's training step is traced once: 0.15 instead of 0.31 s (fast space, 2 cores).
    compat.build_compile_metrics(model)


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    return max(1, math.ceil(train_size / batch_size))
