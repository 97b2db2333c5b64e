"""spaces.device_loop: the split on the device, many steps per compiled call.

Run on TensorFlow and again in make test's JAX part (each backend's own compiled calls). The loop
must train exactly what Keras's own loop trains from host batches (same batches, same steps, same
weights), score validation exactly as Keras's evaluate does, and leave the model as it found it (no
data in it, its own train and test functions back).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from search.pipeline import ArrayBatches
from spaces.device_loop import TrainingCalls, ValidationCalls
from spaces.kernels import Kernels

pytestmark = pytest.mark.backend_neutral


def test_each_epoch_covers_every_image_in_fixed_shapes_and_reshuffles() -> None:
    calls = TrainingCalls(size=1000, batch_size=64, steps_per_call=6, shuffle=True, seed=3)
    # 16 steps (the last batch of 40 filled up to 64) in calls of 6, 6 and 4 that run.
    assert len(calls) == 3
    epochs = []
    for epoch in range(2):
        if epoch:
            calls.on_epoch_begin()  # as Keras's fit does before each later epoch
        items = [calls[i] for i in range(len(calls))]
        assert all(indices.shape == (6, 64) and indices.dtype == np.int32 for indices, _ in items)
        assert [int(active.sum()) for _, active in items] == [6, 6, 4]
        used = np.concatenate([indices[active].ravel() for indices, active in items])
        assert len(used) == 16 * 64 and set(used.tolist()) == set(range(1000))
        # The first 1,000 are a permutation; the 24 that fill the last batch repeat its start.
        assert sorted(used[:1000].tolist()) == list(range(1000))
        np.testing.assert_array_equal(used[1000:], used[:24])
        epochs.append(used)
    assert not np.array_equal(epochs[0], epochs[1])
    again = TrainingCalls(size=1000, batch_size=64, steps_per_call=6, shuffle=True, seed=3)
    np.testing.assert_array_equal(
        np.concatenate([again[i][0][again[i][1]].ravel() for i in range(3)]), epochs[0]
    )


def test_validation_sees_every_image_once_in_order() -> None:
    calls = ValidationCalls(size=300, batch_size=64)
    assert [c[0].shape for c in (calls[0], calls[1])] == [(1, 44), (4, 64)]
    np.testing.assert_array_equal(
        np.sort(np.concatenate([c[0].ravel() for c in (calls[0], calls[1])])), np.arange(300)
    )
    assert len(ValidationCalls(size=128, batch_size=64)) == 1
    # One batch a call (a CPU): five calls, the remainder first, so the first two differ in shape.
    single = ValidationCalls(size=300, batch_size=64, batches_per_call=1)
    assert [single[i][0].shape for i in range(len(single))] == [(1, 44)] + [(1, 64)] * 4


def small_model(seed: int, jit_compile: bool = False) -> keras.Model:
    """uint8 in, batch norm (moving statistics), dropout off: every step's update is deterministic."""
    keras.utils.set_random_seed(seed)
    images = keras.Input((8, 8, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.Conv2D(4, 3, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(images, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=4,
        jit_compile=jit_compile,
    )
    return model


def toy_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    images = rng.integers(0, 120, (count, 8, 8, 3)) + 60 * np.eye(3, dtype=int)[labels][:, None, None, :]
    return images.astype(np.uint8), labels


@pytest.mark.parametrize(("steps_per_call", "jit_compile"), [(1, False), (2, False), (2, True)])
def test_the_device_loop_trains_and_validates_exactly_as_kerass_own_loop(
    steps_per_call: int, jit_compile: bool
) -> None:
    """With XLA too (a GPU's default): on TensorFlow the whole many-step call compiles as one."""
    from spaces.device_loop import fit_on_device

    # 5 steps of 32: one step a call (a CPU's way), or calls of 2 steps, the last with an idle step.
    x, y = toy_split(5 * 32, seed=0)
    x_val, y_val = toy_split(70, seed=1)  # 2 full batches and a remainder of 6

    def batches() -> tuple[ArrayBatches, ArrayBatches]:
        return ArrayBatches(x, y, 3, 32, shuffle=False, seed=0), ArrayBatches(x_val, y_val, 3, 32, False, 0)

    host = small_model(seed=0, jit_compile=jit_compile)
    train, val = batches()
    host_history = host.fit(train, validation_data=val, epochs=2, shuffle=False, verbose=0).history
    device = small_model(seed=0, jit_compile=jit_compile)
    train, val = batches()
    device_history = fit_on_device(
        device, train, validation_data=val, steps_per_call=steps_per_call, epochs=2, verbose=0
    ).history

    for mine, theirs in zip(device.get_weights(), host.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5)
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(device_history[name], host_history[name], rtol=1e-4, atol=1e-5)
    # 10 optimizer steps: an idle step at an epoch's end changed nothing.
    assert int(device.optimizer.iterations) == int(host.optimizer.iterations) == 10
    # The model is left as Keras made it: no data among its variables, its own loops back.
    assert len(device.variables) == len(host.variables)
    assert device.steps_per_execution == 4
    np.testing.assert_allclose(
        device.evaluate(x_val, keras.utils.to_categorical(y_val, 3), verbose=0),
        [device_history["val_loss"][-1], device_history["val_accuracy"][-1]],
        rtol=1e-4,
    )


def test_a_second_fit_continues_the_shuffling_where_the_first_stopped() -> None:
    """A promotion trains on in memory: its epochs must not replay its parent's order."""
    from spaces.device_loop import fit_on_device

    x, y = toy_split(4 * 32, seed=0)
    once = small_model(seed=0)
    fit_on_device(once, ArrayBatches(x, y, 3, 32, True, 5), steps_per_call=1, epochs=2, verbose=0)
    twice = small_model(seed=0)
    batches = ArrayBatches(x, y, 3, 32, True, 5)
    fit_on_device(twice, batches, steps_per_call=1, epochs=1, verbose=0)
    fit_on_device(twice, batches, steps_per_call=1, initial_epoch=1, epochs=2, verbose=0)
    for a, b in zip(twice.get_weights(), once.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def device_kernels() -> Kernels:
    """The split on the device: JAX's default; on TensorFlow a GPU's (with its fused kernels here)."""
    if keras.backend.backend() == "jax":
        return Kernels.for_backend()
    return Kernels(augmentation="step", data="device")


def test_a_search_space_trains_from_the_device_and_learns() -> None:
    """The space's own fit chooses the device loop where its kernels say so (JAX's default), with the
    model's in-step augmentation: the fast space learns the overlapping-colour task as the host
    paths do."""
    import keras_tuner as kt

    from spaces import get_space
    from spaces.base import DataSpec
    from tests.spaces.colours import overlapping_colours

    if keras.backend.backend() == "jax":
        assert Kernels.for_backend().data == "device"
    x, y = overlapping_colours(1200, seed=0)
    x_test, y_test = overlapping_colours(600, seed=1)
    keras.utils.set_random_seed(0)
    spec = DataSpec(num_classes=4, train_size=len(x), batch_size=64)
    space = get_space("fast")(spec, fit_verbose=0, kernels=device_kernels())
    hp = kt.HyperParameters()
    hp.Fixed("width", 16)
    hp.values["tuner/epochs"] = 4
    model = space.build(hp)
    history = space.fit(hp, model, ArrayBatches(x, y, 4, 64, shuffle=True, seed=0), epochs=4)
    assert int(model.optimizer.iterations) == 4 * 19  # ceil(1200 / 64) steps per epoch
    assert model.train_function is None  # Keras's own loop back for what follows
    accuracy = float((model.predict(x_test, verbose=0).argmax(1) == y_test).mean())
    # The TensorFlow host paths measured 0.71-0.72 here (tests/spaces/test_fast_path.py).
    assert accuracy > 0.6, (accuracy, history.history)


def test_arrays_a_user_passes_take_kerass_own_loop() -> None:
    """Only HyperCNN's own batches (search.pipeline.ArrayBatches) go to the device: with validation
    arrays beside them, Keras's loop trains on the host batches."""
    import keras_tuner as kt

    from spaces.base import DataSpec, SpaceHyperModel
    from tests.spaces.colours import overlapping_colours

    class OneConv(SpaceHyperModel):
        def build_features(self, hp: kt.HyperParameters, x: keras.KerasTensor) -> keras.KerasTensor:
            return keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))

    space = OneConv(
        DataSpec(num_classes=4, train_size=64, batch_size=32), fit_verbose=0, kernels=device_kernels()
    )
    assert space.kernels.data == "device"
    hp = kt.HyperParameters()
    hp.values["tuner/epochs"] = 1
    model = space.build(hp)
    x, y = overlapping_colours(64, seed=0)
    validation = (x[:16], keras.utils.to_categorical(y[:16], 4))
    history = space.fit(hp, model, ArrayBatches(x, y, 4, 32, True, 0), validation_data=validation, epochs=1)
    assert int(model.optimizer.iterations) == 2 and "val_accuracy" in history.history


def test_the_cached_compiled_calls_do_not_keep_a_finished_model_alive() -> None:
    """A search trains hundreds of models: the compiled calls kept for a model's later fits must not
    keep it (and its weights, on a GPU) alive once the search has dropped it."""
    import gc
    import weakref

    from spaces import device_loop

    x, y = toy_split(2 * 32, seed=0)
    model = small_model(seed=0)
    device_loop.fit_on_device(
        model, ArrayBatches(x, y, 3, 32, True, 0), steps_per_call=1, epochs=1, verbose=0
    )
    assert model in device_loop._COMPILED  # kept for its next fit
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None
