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

from search import quiet
from search.config import SearchConfig, parse_address
from search.errors import HyperCNNError
from search.runfolder import RunFolder, read_json, write_json

# How long a worker waits for a chief that does not answer: at start, and before it gives up mid-run.
PROBE_S = 60.0
# Every gRPC call to the chief gives up after this (KerasTuner's own waits an hour).
CALL_TIMEOUT_S = 90.0
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


class ChiefWatch(threading.Thread):
    """Exits the process (one line, code 2) at once when the chief that started this worker is gone.

    A thread of its own: the heartbeat's lease renewal is a gRPC call that waits for a vanished chief
    (wait_for_ready, up to CALL_TIMEOUT_S), and a check behind it let a SIGKILLed chief's workers train
    on for that long."""

    def __init__(self, parent: int, interval_s: float = 0.5) -> None:
        super().__init__(name="chief-watch", daemon=True)
        self.parent = parent
        self.interval_s = interval_s

    def run(self) -> None:
        while os.getppid() == self.parent:
            time.sleep(self.interval_s)
        print("error: the chief that started this worker is gone; stopping", file=sys.stderr, flush=True)
        os._exit(EXIT_CHIEF_LOST)


def watch_local_chief() -> None:
    """A worker the chief started (HYPERCNN_CHIEF_PID) leaves with it; a remote worker has no such
    parent and relies on the heartbeat's lease."""
    parent = int(os.environ.get("HYPERCNN_CHIEF_PID", "0"))
    if parent:
        ChiefWatch(parent).start()


class Heartbeat(threading.Thread):
    """Renews the running trial's lease every quarter lease; exits the process (one line, code 2)
    when the chief stays unreachable for a whole lease or more."""

    def __init__(self, client: Any, lease_s: float, address: str) -> None:
        super().__init__(name="lease-heartbeat", daemon=True)
        self.client = client
        self.interval = max(0.5, lease_s / 4)
        self.give_up_after = max(lease_s, 30.0)
        self.address = address

    def run(self) -> None:
        last_answer = time.time()
        while True:
            time.sleep(self.interval)
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


def run_worker(
    chief: str, out: str, name: str = "worker", threads: int | None = None, wait_s: float = PROBE_S
) -> int:
    """Joins the search whose chief listens at `chief` and whose run folder is `out`; returns the
    exit status (0 once the chief says the search is over)."""
    parse_address(chief, "--chief")
    watch_local_chief()  # from the start: loading TensorFlow and the data takes a while
    probe_chief(chief, wait_s)
    keras_backend = quiet.load_keras_backend()  # only once a chief answered: a wrong address fails in seconds
    from search import compat
    from search.worker_client import WorkerOracleClient

    run = RunFolder(out)
    config = SearchConfig.load(run.path)
    chief_info = read_json(run.chief_json) or {}
    if threads and keras_backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    from search.data import load_data
    from search.hardware import choose_acceleration, training_device_line
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
    client = tuner.oracle
    tuner.after_epoch = client.renew
    tuner.lease_lost = client.abandoned.is_set
    tuner.set_deadline(chief_info.get("deadline"))
    Heartbeat(client, float(chief_info.get("lease_s", config.lease_s)), chief).start()
    write_json(run.workers_dir / f"{name}.json", _describe_worker(tuner_id, threads))
    splits = loaded.splits
    num_classes = len(splits.class_names)
    on_device = tuner.hypermodel.kernels.data == "device"
    train = make_dataset(
        splits.x_train, splits.y_train, num_classes, config.batch_size, True, config.seed, on_device
    )
    validation = make_dataset(splits.x_val, splits.y_val, num_classes, config.batch_size, on_device=on_device)
    print(
        f"{tuner_id} joined the chief at {chief}; {training_device_line(choose_acceleration(config))}",
        flush=True,
    )
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
