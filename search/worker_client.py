"""A worker's client of the chief's oracle: KerasTuner's OracleClient, holding leases."""

from __future__ import annotations

import threading
import time
from typing import Any

import keras_tuner as kt

from search import compat
from search.leases import LEASE_METRIC_PREFIX

IDLE_WAIT_S = 1.0

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
