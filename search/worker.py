"""A worker of a search: asks the chief for trials, trains them, reports back (`hypercnn worker`).

It runs KerasTuner's own worker loop against the chief's oracle, through KerasTuner's gRPC client
with what the stock one lacks: it names itself in every report and renews its trial's lease after
every epoch and on a timer (search.leases), waits a second instead of spinning when the chief has no
trial for it yet, and gives up in bounded time when the chief cannot be reached. It shares the run
folder with the chief (NFS or similar across machines) and writes only its attempts' folders there.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import grpc
import keras_tuner as kt

from search import compat
from search.config import SearchConfig, parse_address
from search.errors import HyperCNNError
from search.leases import LEASE_METRIC_PREFIX
from search.runfolder import RunFolder, read_json, write_json

# How long a worker waits for a chief that does not answer: at start, and before it gives up mid-run.
PROBE_S = 60.0
# Every gRPC call to the chief gives up after this (KerasTuner's own waits an hour).
CALL_TIMEOUT_S = 90.0
IDLE_WAIT_S = 1.0
EXIT_CHIEF_LOST = 2


def probe_chief(address: str, timeout_s: float = PROBE_S) -> None:
    """One line and exit 2 when nothing answers at `address`, instead of a tuner built for nothing
    and a call that waits an hour."""
    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise HyperCNNError(
            f"no chief answers at {address} (waited {timeout_s:.0f} s); start the search there first "
            "('hypercnn search --listen HOST:PORT ...') or check the address and the firewall"
        ) from None
    finally:
        channel.close()


OracleClient = compat.oracle_client_class()


class WorkerOracleClient(OracleClient):
    """KerasTuner's OracleClient that holds leases: every report carries the holder's name, a
    report the chief refuses (lease gone) marks the trial abandoned, and IDLE answers wait."""

    def __init__(self, oracle: kt.Oracle, tuner_id: str) -> None:
        super().__init__(oracle)
        self.tuner_id = tuner_id
        self.lease_metric = LEASE_METRIC_PREFIX + tuner_id
        self.current: str | None = None
        self.abandoned = threading.Event()
        self.lock = threading.Lock()

    def create_trial(self, tuner_id: str) -> kt.engine.trial.Trial:
        trial = super().create_trial(tuner_id)
        if trial.status == kt.engine.trial.TrialStatus.IDLE:
            time.sleep(IDLE_WAIT_S)  # the chief waits on other workers' trials (a bracket's round)
        elif trial.status == kt.engine.trial.TrialStatus.RUNNING:
            self.current = trial.trial_id
            self.abandoned.clear()
        return trial

    def update_trial(self, trial_id: str, metrics: dict[str, Any], step: int = 0) -> kt.engine.trial.Trial:
        with self.lock:
            trial = super().update_trial(trial_id, {**metrics, self.lease_metric: 0.0}, step=step)
        if trial.status == kt.engine.trial.TrialStatus.STOPPED and trial_id == self.current:
            self.abandoned.set()
        return trial

    def renew(self) -> None:
        trial_id = self.current
        if trial_id is not None and not self.abandoned.is_set():
            self.update_trial(trial_id, {})

    def end_trial(self, trial: kt.engine.trial.Trial) -> None:
        trial.metrics.register(self.lease_metric)
        trial.metrics.update(self.lease_metric, 0.0)
        with self.lock:
            super().end_trial(trial)
        self.current = None


class Heartbeat(threading.Thread):
    """Renews the running trial's lease every quarter lease; exits the process (one line, code 2)
    when the chief stays unreachable for a whole lease or more, and at once when the chief that
    started this worker is gone."""

    def __init__(self, client: WorkerOracleClient, lease_s: float, address: str) -> None:
        super().__init__(name="lease-heartbeat", daemon=True)
        self.client = client
        self.interval = max(0.5, lease_s / 4)
        self.give_up_after = max(lease_s, 30.0)
        self.address = address
        self.parent = int(os.environ.get("HYPERCNN_CHIEF_PID", "0"))

    def run(self) -> None:
        last_answer = time.time()
        while True:
            time.sleep(self.interval)
            if self.parent and os.getppid() != self.parent:
                print(
                    "error: the chief that started this worker is gone; stopping", file=sys.stderr, flush=True
                )
                os._exit(EXIT_CHIEF_LOST)
            try:
                self.client.renew()
                last_answer = time.time()
            except grpc.RpcError:
                if time.time() - last_answer > self.give_up_after:
                    print(
                        f"error: lost the chief at {self.address} (no answer for "
                        f"{self.give_up_after:.0f} s); run the search's command again to resume it",
                        file=sys.stderr,
                        flush=True,
                    )
                    os._exit(EXIT_CHIEF_LOST)


def run_worker(chief: str, out: str, name: str = "worker", threads: int | None = None) -> int:
    """Joins the search whose chief listens at `chief` and whose run folder is `out`; returns the
    number of trials this worker ended."""
    parse_address(chief, "--chief")
    probe_chief(chief)
    run = RunFolder(out)
    config = SearchConfig.load(run.path)
    chief_info = read_json(run.chief_json) or {}
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    from search.data import load_data
    from search.pipeline import make_dataset
    from search.run import build_tuner
    from search.tuner import process_tuner_id

    host, port = chief.rsplit(":", 1)
    tuner_id = process_tuner_id(name)
    # KerasTuner's chief/worker switches: set before the tuner is built.
    os.environ.update(
        {"KERASTUNER_ORACLE_IP": host, "KERASTUNER_ORACLE_PORT": port, "KERASTUNER_TUNER_ID": tuner_id}
    )
    compat.set_chief_timeout(CALL_TIMEOUT_S)
    loaded = load_data(config)
    tuner = build_tuner(
        config, loaded, overwrite=False, oracle_client=lambda oracle: WorkerOracleClient(oracle, tuner_id)
    )
    client: WorkerOracleClient = tuner.oracle
    tuner.after_epoch = client.renew
    tuner.lease_lost = client.abandoned.is_set
    tuner.set_deadline(chief_info.get("deadline"))
    Heartbeat(client, float(chief_info.get("lease_s", config.lease_s)), chief).start()
    write_json(run.workers_dir / f"{name}.json", _describe_worker(tuner_id, threads))
    splits = loaded.splits
    num_classes = len(splits.class_names)
    train = make_dataset(
        splits.x_train, splits.y_train, num_classes, config.batch_size, shuffle=True, seed=config.seed
    )
    validation = make_dataset(splits.x_val, splits.y_val, num_classes, config.batch_size)
    print(f"{tuner_id} joined the chief at {chief}", flush=True)
    tuner.search(train, validation_data=validation, epochs=config.max_epochs, verbose=0)
    print(f"{tuner_id}: the chief says the search is over", flush=True)
    return 0


def _describe_worker(tuner_id: str, threads: int | None) -> dict[str, Any]:
    from search.hardware import cpu_count, cpu_model, detect_gpus

    return {
        "tuner_id": tuner_id,
        "pid": os.getpid(),
        "cpu": cpu_model(),
        "cpu_cores": cpu_count(),
        "threads": threads,
        "gpus": detect_gpus(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "started_at": time.time(),
    }
