"""Leases on running trials, kept by the oracle (the chief's, or the single process's own).

Each trial handed out is leased to the tuner that asked for it (its KerasTuner tuner_id, unique per
process). The holder renews the lease every epoch and on a timer (search.worker); a lease that runs
out (worker killed, machine gone, network cut) sends the trial back to KerasTuner's retry queue, and
the next free worker continues it from its newest saved epoch (search.attempts). Only the current
holder's reports count: a cut-off worker that still runs is told its lease is gone and its results
are dropped, so no trial is counted twice.

Workers talk to the chief through KerasTuner's own gRPC service, whose messages carry no tuner id:
the holder names itself in one extra metric, LEASE_METRIC_PREFIX + tuner_id, which the oracle strips
before anything is recorded.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras_tuner as kt

from search import attempts, compat
from search.runfolder import TRIAL_RECORD, read_json, write_json

LEASE_METRIC_PREFIX = "hypercnn-lease/"
# Holders renew several times per lease; a worker busy compiling still renews from its timer thread.
DEFAULT_LEASE_S = 60.0


def attempt_name(tuner_id: str) -> str:
    """The folder an attempt writes to, from its holder's tuner id."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", tuner_id)


def holder_in(metrics: Any) -> str | None:
    """The tuner id a worker's report names itself with, if any."""
    for name in list(metrics.keys()):
        if name.startswith(LEASE_METRIC_PREFIX):
            return name[len(LEASE_METRIC_PREFIX) :]
    return None


@dataclasses.dataclass
class Lease:
    holder: str
    expires_at: float
    since: float = dataclasses.field(default_factory=time.time)


class LeasedOracleMixin:
    """Mixed into search.tuner's Hyperband oracle. `lease_s` None (a single process): leases never
    run out, the bookkeeping (attempts, commit) is the same."""

    lease_s: float | None = None

    def init_leases(self) -> None:
        self.leases: dict[str, Lease] = {}
        # Every holder a trial was handed to, in order (trials.csv's worker and attempts).
        self.holders: dict[str, list[str]] = {}
        # Called (in the oracle's process) after a trial ended and its files were committed.
        self.on_trial_ended: Callable[[kt.engine.trial.Trial], None] | None = None
        # The chief sets this when the search is over: every worker is then told to stop.
        self.stopping = False
        self.events: list[str] = []

    def trial_dir(self, trial_id: str) -> Path:
        return Path(compat.oracle_trial_dir(self, trial_id))

    def grant(self, trial: kt.engine.trial.Trial, tuner_id: str) -> None:
        holders = self.holders.setdefault(trial.trial_id, [])
        if not holders or holders[-1] != tuner_id:
            holders.append(tuner_id)
        expires = time.time() + self.lease_s if self.lease_s else float("inf")
        self.leases[trial.trial_id] = Lease(tuner_id, expires)
        self.save()  # hypercnn status shows who runs what from the saved state

    def holds(self, trial_id: str, holder: str) -> bool:
        lease = self.leases.get(trial_id)
        return lease is not None and lease.holder == holder

    def renew(self, trial_id: str, holder: str) -> bool:
        if not self.holds(trial_id, holder):
            return False
        if self.lease_s:
            self.leases[trial_id].expires_at = time.time() + self.lease_s
        return True

    def expire_leases(self, now: float | None = None) -> list[str]:
        """Trials whose holder stopped renewing go back to the retry queue; returns their ids."""
        now = time.time() if now is None else now
        expired = [trial_id for trial_id, lease in self.leases.items() if lease.expires_at < now]
        for trial_id in expired:
            lease = self.leases.pop(trial_id)
            for tuner_id, trial in list(self.ongoing_trials.items()):
                if trial.trial_id == trial_id:
                    del self.ongoing_trials[tuner_id]
            self.tuner_ids.discard(lease.holder)
            compat.requeue_trial(self, trial_id)
            self.events.append(
                f"trial {trial_id}: lease of {lease.holder} ran out (no renewal for {self.lease_s:.0f} s); "
                "the next free worker continues it from its last finished epoch"
            )
        if expired:
            self.save()
        return expired

    def lease_stopped_trial(self, trial_id: str) -> kt.engine.trial.Trial:
        """The answer to a worker whose lease is gone: stop this trial, its results will not count."""
        return kt.engine.trial.Trial(
            self.hyperparameters.copy(), trial_id=trial_id, status=kt.engine.trial.TrialStatus.STOPPED
        )

    def accept_end(self, trial: kt.engine.trial.Trial) -> str | None:
        """The holder whose attempt ends `trial`, or None when the report must be dropped."""
        holder = holder_in(trial.metrics.metrics) if trial.metrics else None
        lease = self.leases.get(trial.trial_id)
        if lease is None or (holder is not None and holder != lease.holder):
            self.events.append(
                f"trial {trial.trial_id}: dropped the report of {holder or 'a worker'}, "
                "which no longer holds its lease"
            )
            return None
        return lease.holder

    def commit_attempt(self, trial: kt.engine.trial.Trial, holder: str) -> None:
        """The accepted attempt's files become the trial's; the record names the worker and attempts,
        and carries a failed trial's reason (KerasTuner's messages leave it out)."""
        trial_dir = self.trial_dir(trial.trial_id)
        attempts.commit(trial_dir, attempt_name(holder))
        record_path = trial_dir / TRIAL_RECORD
        record = read_json(record_path) or {}
        record["worker"] = holder
        record["attempts"] = len(self.holders.get(trial.trial_id, [holder]))
        write_json(record_path, record)
        if trial.status in ("FAILED", "INVALID") and not trial.message and record.get("error"):
            trial.message = record["error"]

    def lease_state(self) -> dict[str, Any]:
        # "running" is for hypercnn status only: a resumed search hands those trials out again.
        running = {t: {"holder": lease.holder, "since": lease.since} for t, lease in self.leases.items()}
        return {"holders": self.holders, "running": running}

    def set_lease_state(self, state: dict[str, Any]) -> None:
        self.holders = {k: list(v) for k, v in state.get("holders", {}).items()}
