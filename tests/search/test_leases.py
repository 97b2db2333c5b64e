"""Leases on running trials (search.leases), on KerasTuner's real oracle: a lost holder's trial goes to
the next worker; only the current holder's reports count; attempts are committed whole."""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pytest

from search import attempts
from search.leases import LEASE_METRIC_PREFIX
from search.tuner import HyperCNNTuner, model_bytes
from tests.search.test_sampler import oracle as make_oracle


def report(holder: str) -> dict[str, float]:
    return {LEASE_METRIC_PREFIX + holder: 0.0}


def test_a_lost_holder_s_trial_goes_to_the_next_worker_and_its_late_reports_are_dropped(
    tmp_path: Path,
) -> None:
    oracle = make_oracle(tmp_path, "random")
    oracle.lease_s = 5.0
    trial = oracle.create_trial("worker-a")
    trial_dir = Path(oracle.trial_dir(trial.trial_id))
    # Worker A saved its first epoch, then went silent.
    folder_a = attempts.attempt_dir(trial_dir, "worker-a")
    folder_a.mkdir(parents=True)
    (folder_a / "hypercnn.json").write_text(json.dumps({"by": "a"}))
    assert oracle.update_trial(trial.trial_id, report("worker-a")).status == "RUNNING"  # a renewal
    assert oracle.expire_leases(now=time.time() + 1.0) == []
    assert oracle.expire_leases(now=time.time() + 6.0) == [trial.trial_id]
    assert "lease of worker-a ran out" in oracle.events[-1]

    # The next worker to ask gets the same trial (KerasTuner's retry queue), before any new one.
    again = oracle.create_trial("worker-b")
    assert again.trial_id == trial.trial_id and again.status == "RUNNING"
    assert oracle.holders[trial.trial_id] == ["worker-a", "worker-b"]

    # A, cut off but still running, is told to stop; its results never reach the trial.
    late = oracle.update_trial(trial.trial_id, {"val_accuracy": 0.99, **report("worker-a")})
    assert late.status == "STOPPED"
    assert not oracle.trials[trial.trial_id].metrics.exists("val_accuracy")
    stale = kt.engine.trial.Trial(oracle.get_space(), trial_id=trial.trial_id, status="COMPLETED")
    stale.metrics.register(LEASE_METRIC_PREFIX + "worker-a")
    oracle.end_trial(stale)
    assert oracle.trials[trial.trial_id].status == "RUNNING"

    # B's report counts; its attempt's files become the trial's, and the record says who and how often.
    folder_b = attempts.attempt_dir(trial_dir, "worker-b")
    folder_b.mkdir(parents=True)
    (folder_b / "hypercnn.json").write_text(json.dumps({"by": "b"}))
    (folder_b / attempts.LAST_CHECKPOINT).write_bytes(b"b's weights")
    assert (
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5, **report("worker-b")}).status == "RUNNING"
    )
    done = kt.engine.trial.Trial(oracle.get_space(), trial_id=trial.trial_id, status="COMPLETED")
    done.metrics.register(LEASE_METRIC_PREFIX + "worker-b")
    ended = []
    oracle.on_trial_ended = ended.append
    oracle.end_trial(done)
    assert oracle.trials[trial.trial_id].status == "COMPLETED" and oracle.trials[trial.trial_id].score == 0.5
    record = json.loads((trial_dir / "hypercnn.json").read_text())
    assert record == {"by": "b", "worker": "worker-b", "attempts": 2}
    assert (trial_dir / attempts.LAST_CHECKPOINT).read_bytes() == b"b's weights"
    assert not (trial_dir / attempts.ATTEMPTS).exists()
    assert [t.trial_id for t in ended] == [trial.trial_id]
    # The holders survive a restart of the chief (trials.csv's attempts column).
    assert oracle.get_state()["holders"][trial.trial_id] == ["worker-a", "worker-b"]


def test_after_the_deadline_or_the_end_every_worker_is_told_to_stop(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path, "random")
    oracle.deadline = time.time() - 1
    assert oracle.create_trial("worker-a").status == "STOPPED"
    oracle.deadline = None
    assert oracle.create_trial("worker-a").status == "RUNNING"
    oracle.stopping = True
    assert oracle.create_trial("worker-b").status == "STOPPED"


def test_newest_epoch_reads_only_whole_states_of_other_attempts(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    trial_dir = tmp_path / "trial_0001"
    attempts.save_epoch(attempts.attempt_dir(trial_dir, "a"), model, 1, {"epoch": [1]})
    attempts.save_epoch(attempts.attempt_dir(trial_dir, "a"), model, 2, {"epoch": [1, 2]})
    # Only the newest state is kept.
    assert sorted(p.name for p in attempts.attempt_dir(trial_dir, "a").iterdir()) == [
        "epoch-0002.json",
        "epoch-0002.weights.h5",
    ]
    # A state whose .json never got written (killed between the two files) does not count.
    half = attempts.attempt_dir(trial_dir, "b")
    half.mkdir(parents=True)
    model.save_weights(half / "epoch-0003.weights.h5")
    # Nor does a state whose weights are gone (another attempt's clean-up).
    orphan = attempts.attempt_dir(trial_dir, "c")
    orphan.mkdir(parents=True)
    (orphan / "epoch-0004.json").write_text(json.dumps({"epoch": 4, "history": {"epoch": [1, 2, 3, 4]}}))
    found = attempts.newest_epoch(trial_dir)
    assert (found.epoch, found.attempt, found.history) == (2, "a", {"epoch": [1, 2]})
    assert attempts.newest_epoch(trial_dir, exclude="a") is None


def test_the_live_model_cache_is_bounded_in_bytes() -> None:
    tuner = HyperCNNTuner.__new__(HyperCNNTuner)  # only its cache: no search, no data
    tuner.live_models, tuner.live_bytes = {}, {}

    class Config:
        model_cache_mb = 1

    tuner.config = Config()
    from collections import OrderedDict

    tuner.live_models = OrderedDict()

    def model(units: int) -> keras.Model:
        built = keras.Sequential([keras.Input((256,)), keras.layers.Dense(units)])
        built.compile(optimizer="adam", loss="mse")
        built.optimizer.build(built.trainable_variables)
        return built

    small = model(64)  # 16,448 parameters, 3 copies with Adam's two moments: about 200 KB
    assert abs(model_bytes(small) - 3 * 4 * (256 * 64 + 64)) <= 64
    for name in ("a", "b", "c", "d"):
        tuner._keep_live(name, model(64))
    assert list(tuner.live_models) == ["a", "b", "c", "d"]
    tuner._keep_live("e", model(512))  # about 1.6 MB alone: everything older goes, and it too
    assert sum(tuner.live_bytes.values()) <= 2**20
    assert "a" not in tuner.live_models and np.all([k in tuner.live_bytes for k in tuner.live_models])


def test_an_attempt_that_trains_no_epoch_reports_the_earlier_attempts_metrics() -> None:
    """The killed attempt had saved the trial's last epoch: the next one trains nothing, and the
    trial must still be scored from the epochs the killed one recorded."""
    from search.tuner import with_earlier_epochs

    earlier = {"epoch": [1, 2, 3], "val_accuracy": [0.3, 0.5, 0.4], "loss": [2.0, 1.5, 1.2]}
    restored = attempts.EpochState(3, Path("unused.weights.h5"), earlier, "worker1_vm_1_1")
    nothing_trained = keras.callbacks.History()
    nothing_trained.history = {}
    merged = with_earlier_epochs(nothing_trained, restored).history
    assert merged == {"val_accuracy": [0.3, 0.5, 0.4], "loss": [2.0, 1.5, 1.2]}
    # An attempt that trained the last epoch itself follows the earlier ones.
    one_more = keras.callbacks.History()
    one_more.history = {"val_accuracy": [0.6], "loss": [1.0]}
    restored = attempts.EpochState(2, Path("unused.weights.h5"), {k: v[:2] for k, v in earlier.items()}, "w")
    assert with_earlier_epochs(one_more, restored).history == {
        "val_accuracy": [0.3, 0.5, 0.6],
        "loss": [2.0, 1.5, 1.0],
    }


def test_an_error_in_the_chiefs_oracle_does_not_lock_out_every_later_call(
    monkeypatch, tmp_path: Path
) -> None:
    """KerasTuner's own lock stayed held after an exception: the next call from another gRPC thread
    then waited forever."""
    import threading

    oracle = make_oracle(tmp_path, "random")
    trial = oracle.create_trial("worker1")
    monkeypatch.setattr(kt.Oracle, "end_trial", lambda self, trial: (_ for _ in ()).throw(ValueError("boom")))
    trial.status = "COMPLETED"
    with pytest.raises(ValueError, match="boom"):
        oracle.end_trial(trial)
    answered = []
    other = threading.Thread(
        target=lambda: answered.append(oracle.check_leases()), name="grpc-2", daemon=True
    )
    other.start()
    other.join(timeout=10)
    assert answered == [[]], "a later call from another thread waited for the lock"
