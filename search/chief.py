"""The chief of a search on several processes or machines (KerasTuner's chief/worker mode).

The chief holds the oracle and serves it with KerasTuner's own gRPC servicer; it trains nothing.
`hypercnn search --workers N` starts N workers on this machine (search.worker), each pinned to one
GPU or given a share of the CPU cores; `--listen HOST:PORT` lets workers on other machines join
(`hypercnn worker --chief HOST:PORT --out RUN`). The chief shows one progress view (a line per
finished trial, naming its worker), hands a lost worker's trial to the next free worker when its
lease runs out (search.leases), ends when the search is done or its budget spent, and then tells
every worker to stop. KerasTuner's own start_server loop is not used: it never notices a lost worker
and waits for ever (keras-tuner #915).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from search import compat, devices
from search.config import SearchConfig, parse_address
from search.devices import visible_gpus, worker_count
from search.errors import HyperCNNError
from search.hardware import cpu_count
from search.runfolder import RunFolder, write_json
from search.tuner import HyperCNNTuner

POLL_S = 0.5
# A local worker that dies (killed, out of memory) is started again this many times per slot.
MAX_RESTARTS = 3
# How long the chief waits for its workers to leave after telling them to stop.
STOP_GRACE_S = 30.0


@dataclasses.dataclass
class WorkerSlot:
    """One local worker process: its GPU (or None) and CPU threads, and how often it was restarted."""

    index: int
    gpu: str | None
    threads: int
    log: Path
    process: subprocess.Popen | None = None
    restarts: int = 0

    @property
    def name(self) -> str:
        return f"worker{self.index}"


def plan_workers(config: SearchConfig, run: RunFolder) -> list[WorkerSlot]:
    """auto: a worker per visible GPU, pinned to it; on a CPU, N workers share the cores evenly."""
    count = worker_count(config)
    gpus = visible_gpus()
    threads = max(1, cpu_count() // count)
    return [
        WorkerSlot(
            i + 1, gpus[i % len(gpus)] if gpus else None, threads, run.workers_dir / f"worker{i + 1}.log"
        )
        for i in range(count)
    ]


def worker_environment(slot: WorkerSlot) -> dict[str, str]:
    env = {**os.environ, "HYPERCNN_CHIEF_PID": str(os.getpid())}
    env.pop(devices.VISIBLE_GPUS_ENV, None)
    # Pinned before the worker imports TensorFlow or JAX; memory grows as needed instead of being
    # taken whole, so two workers can share a GPU.
    env["CUDA_VISIBLE_DEVICES"] = slot.gpu if slot.gpu is not None else ""
    env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    env["OMP_NUM_THREADS"] = str(slot.threads)
    return env


def start_worker(slot: WorkerSlot, address: str, run: RunFolder) -> None:
    slot.log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "search",
        "worker",
        "--chief",
        address,
        "--out",
        str(run.path),
        "--name",
        slot.name,
        "--threads",
        str(slot.threads),
    ]
    with open(slot.log, "a") as log:
        slot.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=worker_environment(slot),
            stdin=subprocess.DEVNULL,
        )


def start_service(tuner: HyperCNNTuner, listen: str | None) -> tuple[grpc.Server, str]:
    """KerasTuner's oracle servicer on a gRPC server; returns it and the address workers dial."""
    servicer_class, add_servicer = compat.oracle_service()
    host, port = parse_address(listen, "--listen") if listen else ("127.0.0.1", 0)
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=8))
    add_servicer(servicer_class(tuner.oracle), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise HyperCNNError(
            f"the chief cannot listen on {host}:{port} (in use or not this machine's address); "
            "choose another --listen HOST:PORT"
        )
    server.start()
    dial = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]") else host
    return server, f"{dial}:{bound}"


def serve_search(tuner: HyperCNNTuner, config: SearchConfig) -> bool:
    """Serves the oracle until the search is done or its budget spent; returns True on Ctrl-C."""
    run = tuner.run
    oracle = tuner.oracle
    oracle.lease_s = config.lease_s
    oracle.verbose = 0
    # KerasTuner resumes a project only where its tuner's state file exists (its own chief saves it
    # before serving, too): without it a restarted chief would start over and reuse trial ids.
    tuner.save()
    server, address = start_service(tuner, config.listen)
    write_json(
        run.chief_json,
        {"address": address, "pid": os.getpid(), "lease_s": config.lease_s, "deadline": tuner.deadline},
    )
    slots = plan_workers(config, run)
    for slot in slots:
        start_worker(slot, address, run)
    pinned = ", ".join(
        f"{s.name} on GPU {s.gpu}" if s.gpu else f"{s.name} ({s.threads} threads)" for s in slots
    )
    print(
        f"chief listening on {address}; {pinned or 'no local workers'}"
        + (
            f"; workers elsewhere join with: hypercnn worker --chief {address} --out {run.path}"
            if config.listen
            else ""
        ),
        flush=True,
    )
    interrupted = False
    try:
        while True:
            time.sleep(POLL_S)
            oracle.check_leases()
            while oracle.events:
                print(oracle.events.pop(0), flush=True)
            done = (oracle.finished or oracle.past_deadline()) and not oracle.leases
            if done:
                break
            _look_after(slots, address, run, searching=not oracle.finished)
            if slots and all(s.process.poll() is not None for s in slots) and not oracle.leases:
                print(
                    f"every worker stopped before the search ended (logs: {run.workers_dir}); "
                    "run the same command to resume",
                    flush=True,
                )
                break
    except KeyboardInterrupt:
        interrupted = True
        for slot in slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signal.SIGINT)
    finally:
        oracle.stopping = True
        _wait_for_workers(slots, STOP_GRACE_S if not interrupted else 10.0)
        server.stop(grace=1.0)
        oracle.save()
    return interrupted


def _look_after(slots: list[WorkerSlot], address: str, run: RunFolder, searching: bool) -> None:
    """A local worker that died while the search goes on is started again (its trial continues
    elsewhere, or by the new worker, once its lease runs out)."""
    for slot in slots:
        code = slot.process.poll() if slot.process is not None else 0
        if code is None or code == 0 or not searching:
            continue
        last = _last_line(slot.log)
        if slot.restarts >= MAX_RESTARTS:
            continue
        slot.restarts += 1
        print(
            f"{slot.name} exited with {code} ({last or 'no output'}); starting it again "
            f"({slot.restarts}/{MAX_RESTARTS})",
            flush=True,
        )
        start_worker(slot, address, run)


def _wait_for_workers(slots: list[WorkerSlot], grace_s: float) -> None:
    stop_at = time.time() + grace_s
    for slot in slots:
        if slot.process is None:
            continue
        try:
            slot.process.wait(timeout=max(0.1, stop_at - time.time()))
        except subprocess.TimeoutExpired:
            slot.process.kill()
            slot.process.wait()


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""
