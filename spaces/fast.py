"""fast: a few wide conv layers with batch norm and max-pooling, for small budgets.

In the spirit of the fastest known CIFAR-10 trainers (Page's ResNet-9 lineage, Keller Jordan's
airbench): few layers, pooling early, batch norm after every conv, a strong shared recipe. Cheap per
image, so a 15-minute CPU search or a 3-minute GPU search still trains the winner long enough.
"""

from __future__ import annotations

import keras
import keras_tuner as kt
from keras import layers

from search.plan import FINAL_EPOCHS_WANTED, BudgetPick
from spaces import register_space
from spaces.base import SpaceHyperModel

HEAD_SCALE = 1 / 8

# Width 48, GELU, dropout and strong weight decay: the configuration that trains best for long.
W48_GELU = {
    "width": 48,
    "activation": "gelu",
    "dropout": 0.2,
    "label_smoothing": 0.15,
    "optimizer": "sgd_nesterov",
    "sgd_nesterov_learning_rate": 0.2747,
    "weight_decay": 0.004384,
    "warmup_fraction": 0.1,
    "bn_momentum": 0.8,
    "augment_crop": 2,
}


def w48_gelu_recipe_on_relu(width: int) -> dict:
    """W48_GELU's recipe (optimizer, regularization, augmentation) on a ReLU net of `width`."""
    return {**W48_GELU, "width": width, "activation": "relu"}


# On width 24: cheap in float32, for budgets too short for W48_GELU.
W24_RECIPE = w48_gelu_recipe_on_relu(24)
# Its seconds per epoch over the default's, by the width oneDNN runs float32 at (bench/portfolio.py).
W24_RECIPE_COSTS = {"float32/avx2": 0.6, "float32/avx512": 0.75}
# On the default's own net (width 32): its cost, in bfloat16, where the default plateaus early.
W32_RECIPE = w48_gelu_recipe_on_relu(32)
# From this many default epochs of final training, cutout (at the default's cost) is the pick, so
# the ranges of the picks measured below it (w32-recipe, w24-recipe) end here.
CUTOUT_FROM_DEFAULT_EPOCHS = 40


@register_space("fast")
class FastNet(SpaceHyperModel):
    description = "airbench-style: stem + 3 conv-pool-BN blocks, global max-pool; the pick for small budgets"
    # After the default: three configurations of the 600 s search_quality bench at e33f1cb (2-core AVX2
    # CPU, 10,000 training images; results/bench_search_quality/hypercnn/run/trials.csv), each the best
    # of its cost: trial 7 at 0.6x the default's seconds per epoch (40.4 % after 1 epoch), trial 2 at
    # the same cost (44.6 %), trial 6 at 2x (47.8 %, the default 41.9 %).
    portfolio = (
        {
            "width": 24,
            "convs_per_block": 1,
            "optimizer": "adamw",
            "adamw_learning_rate": 0.0028,
            "weight_decay": 5.8e-5,
            "warmup_fraction": 0.0,
            "label_smoothing": 0.15,
            "augment_crop": 2,
            "augment_cutout": 0.5,
        },
        {
            "width": 24,
            "activation": "gelu",
            "optimizer": "adamw",
            "adamw_learning_rate": 0.0046,
            "weight_decay": 2.3e-5,
            "warmup_fraction": 0.0,
            "bn_momentum": 0.8,
        },
        {
            "width": 48,
            "dropout": 0.1,
            "optimizer": "adamw",
            "adamw_learning_rate": 0.0033,
            "weight_decay": 0.0027,
            "warmup_fraction": 0.05,
            "label_smoothing": 0.05,
        },
        # Then the 45-minute bench's winner (2 AVX512-BF16 cores, 2a5839f: trial 0035, 84.77 % after its
        # final training; results/bench_search_quality_bf16_2700_iterations.csv): at three times the
        # default's cost per epoch it trails it at 45 default epochs of time and leads at 65 and 80 (-0.7,
        # +1.0, +2.8 points on validation, results/bench_portfolio_bf16_45_65.csv and _80.csv).
        W48_GELU,
    )

    # Where the final training fits 40 or more default epochs but too few to search, bench/portfolio.py
    # on 2 AVX512-BF16 cores (results/bench_portfolio*.csv, validation). W48_GELU once it fits 18.75 of
    # its own epochs (60 default epochs in bfloat16, where it costs 3.2): it trailed the default by 0.7
    # points with 14 epochs (45 default epochs of time) and led by +1.0 with 20 (65) and +2.8 with 27
    # (80), where cutout was -0.15 at 65. In float32 (ONEDNN_MAX_CPU_ISA=AVX2) it costs 2.25 to 2.4 and
    # led by +2.10 and +1.90 with 21 and 22 epochs (50 default epochs, two seeds,
    # results/bench_portfolio_avx2cap_50*.csv), where cutout led by +0.75 and +0.25; so from 45 default
    # epochs there. Below: cutout, at the default's cost: at 45 it led the
    # default by +1.55, +0.65 and -0.85 (bfloat16, three runs, mean +0.45), at 30 it trailed by 0.75.
    # Below 40 in bfloat16: at 36 (a 5-minute job on a 237 GFLOP/s VM) the default led cutout by 0.55,
    # width 48 by 1.0 and width 24 by 2.6 points (results/bench_portfolio_bf16_36.csv), but W48_GELU's
    # recipe on the default's own net led the default ('w32-recipe').
    budget_picks = (
        BudgetPick(
            "w48-gelu",
            W48_GELU,
            min_epochs=FINAL_EPOCHS_WANTED / 3.2,
            costs={"mixed_bfloat16": 3.2, "float32": 2.4},
        ),
        BudgetPick(
            "cutout",
            {"augment_cutout": 0.5},
            min_epochs=CUTOUT_FROM_DEFAULT_EPOCHS,
            max_epochs=FINAL_EPOCHS_WANTED,
        ),
        # In bfloat16 at 36 default epochs of time (a 5-minute job on a 237 GFLOP/s VM), where every
        # other candidate trailed the default (results/bench_portfolio_bf16_36*.csv), W48_GELU's recipe
        # on the default's net led it by +1.65, +1.70 and +1.15 points on validation with 36 to 37
        # epochs at its cost (three seeds: results/bench_portfolio_bf16_36_more.csv and
        # bench_portfolio_bf16_36_recipe_seeds.csv). Measured there only, so its range is narrow
        # around it (the plans of 5-minute jobs there counted 32 to 38 default epochs), up to where
        # cutout takes over; in float32 (AVX2 cap, 18 default epochs) it led by only 0.2 (one seed),
        # so bfloat16 only.
        BudgetPick(
            "w32-recipe",
            W32_RECIPE,
            min_epochs=30,
            max_epochs=CUTOUT_FROM_DEFAULT_EPOCHS,
            costs={"mixed_bfloat16": 1.0},
            led_at=frozenset({"mixed_bfloat16"}),
        ),
        # In float32 only, at the cost of the CPU's vector width (search.hardware.cost_key): 0.56 to
        # 0.59 of the default's epoch without AVX-512 (oneDNN capped at AVX2), 0.72 to 0.80 with
        # AVX-512 float32 kernels (ONEDNN_MAX_CPU_ISA=AVX512_CORE), where at 18 default epochs of time
        # it trained 23 to 25 of its own and led by -0.15, +2.20 and 0.00 points (three seeds,
        # results/bench_portfolio_avx512core_18*.csv); in bfloat16 width 24 costs 1.41 to 2.25 and
        # trailed. Without AVX-512, at 18 default epochs of time (a 5-minute job at 13 s per epoch) it
        # trained 30 to 32 of its own and led the default by 0.75, 2.75 and 2.30 points on validation
        # (three seeds, results/bench_portfolio_avx2cap_18*.csv); at 9 and at 30 default epochs of
        # time it led by 2.50 and 5.10, and by 1.00 and 2.25 (two seeds,
        # results/bench_portfolio_avx2cap_9_30.csv), and at 36 by 0.90 (one seed, 59 of its own,
        # results/bench_portfolio_avx2cap_36.csv), where the recipe on the default's own net led by
        # 1.00; at 6 it led by 4.55 and 6.55 with 10 and 11 of its own (two seeds,
        # results/bench_portfolio_avx2cap_6.csv). Its range starts at 10 of its own epochs as the
        # plan counts them at 0.6 (6 default epochs: a 5-minute job on one slow core fits 7 to 9) and
        # ends where cutout takes over (40 default epochs at 0.6): between 30 and 40 no pick was
        # trained, and a 15-minute job on a slow machine (33 default epochs) tied the default.
        BudgetPick(
            "w24-recipe",
            W24_RECIPE,
            # Its range in default epochs of time under AVX2, counted in its own epochs there.
            min_epochs=6 / W24_RECIPE_COSTS["float32/avx2"],
            max_epochs=CUTOUT_FROM_DEFAULT_EPOCHS / W24_RECIPE_COSTS["float32/avx2"],
            costs=W24_RECIPE_COSTS,
            led_at=frozenset({"float32"}),
        ),
    )

    def build_features(self, hp: kt.HyperParameters, x: keras.KerasTensor) -> keras.KerasTensor:
        width = hp.Choice("width", [16, 24, 32, 48, 64], default=32)
        convs = hp.Int("convs_per_block", 1, 2, default=2)
        # ReLU by default: GELU's erf in bfloat16 ran at half the images/s of ReLU on the 2-core CPU
        # (fast defaults, mixed bfloat16: 972 vs 1,936-2,728 img/s); GELU stays a choice.
        activation = hp.Choice("activation", ["relu", "gelu"], default="relu")
        dropout = hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.0)
        norm = self.batch_norm(hp)

        def conv_bn(x: keras.KerasTensor, filters: int, name: str, pool: bool = False) -> keras.KerasTensor:
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
            if pool:  # pool before BN: the norm then sees the statistics the next conv will get
                x = layers.MaxPooling2D(name=f"{name}_pool")(x)
            x = norm(f"{name}_bn")(x)
            return layers.Activation(activation, name=f"{name}_act")(x)

        x = conv_bn(x, width, "stem")
        for block, multiple in enumerate((1, 2, 4), start=1):
            x = conv_bn(x, width * multiple, f"block{block}a", pool=True)
            for extra in range(1, convs):
                x = conv_bn(x, width * multiple, f"block{block}{'abc'[extra]}")
        # Max over positions: "is the feature anywhere", robust to where the object sits.
        x = layers.GlobalMaxPooling2D(name="pool")(x)
        # Shrink the head's input (airbench's 1/9 logit scale): max-pooled BN features make large
        # initial logits that blow up the first steps at lr 0.1. Measured on the real zip, defaults,
        # 10k images, 4 epochs: val_accuracy 0.633 with 1/8 vs 0.583 without.
        x = layers.Rescaling(HEAD_SCALE, name="head_scale")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name="dropout")(x)
        return x
