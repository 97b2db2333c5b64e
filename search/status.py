"""hypercnn status RUN: where a running or stopped search stands, from its run folder alone.

No TensorFlow, Keras or KerasTuner: it reads trials.csv, KerasTuner's oracle.json and trial.json
files, the budget ledgers and the workers' files, so it answers in a second while a search trains.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pandas as pd

from search.attempts import folder_bytes
from search.config import SearchConfig
from search.objective import get_objective
from search.ranking import leaderboard
from search.runfolder import RunFolder, error_line, read_json

# A ledger rewritten this recently belongs to a live search (it is rewritten every 2 s).
ALIVE_WITHIN_S = 10.0


def _alive(ledger: dict[str, Any] | None) -> bool:
    """On this machine, whether the ledger's process still exists; elsewhere, whether it wrote lately."""
    if not ledger or time.time() - float(ledger.get("written_at", 0)) > ALIVE_WITHIN_S:
        return False
    if ledger.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(ledger["pid"]), 0)
    except (ProcessLookupError, KeyError, ValueError):
        return False
    except PermissionError:
        return True
    try:  # a killed process its parent has not reaped yet is gone too
        return Path(f"/proc/{ledger['pid']}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _size(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return ""


def _trial_statuses(run: RunFolder) -> dict[str, dict[str, Any]]:
    """KerasTuner's own view of every trial (status, message), including those not yet in trials.csv."""
    statuses = {}
    for path in sorted(run.tuner_dir.glob("trial_*/trial.json")):
        content = read_json(path) or {}
        statuses[str(content.get("trial_id", path.parent.name.removeprefix("trial_")))] = content
    return statuses


def search_status(run_dir: str | Path) -> dict[str, Any]:
    """Everything `hypercnn status` prints, as data (tests read it)."""
    run = RunFolder(run_dir)
    config = SearchConfig.load(run.path)
    objective = get_objective(config.objective)
    oracle = read_json(run.tuner_dir / "oracle.json") or {}
    statuses = _trial_statuses(run)
    table = pd.DataFrame()
    if run.trials_csv.is_file():
        table = pd.read_csv(run.trials_csv, dtype={"trial_id": str})
    ledgers = {name: read_json(path) for name, path in (("run", run.job_json), ("search", run.search_json))}
    live = any(_alive(ledger) for ledger in ledgers.values())
    running = oracle.get("running", {}) if live else {}
    # Trials KerasTuner still marks RUNNING in a stopped search: the next invocation continues them.
    interrupted = sorted(t for t, s in statuses.items() if s.get("status") == "RUNNING" and t not in running)
    failed = [
        (trial_id, error_line(content.get("message")) or _record_error(run, trial_id))
        for trial_id, content in statuses.items()
        if content.get("status") in ("FAILED", "INVALID")
    ]
    best = None
    if len(table):
        ranked = leaderboard(table, objective)
        top = ranked[ranked["rank"].notna()]
        if len(top):
            best = top.iloc[0].to_dict()
    ledger = ledgers["run"] or ledgers["search"] or {}
    budget = ledger.get("time_budget_s")
    spent = ledger.get("spent_s")
    return {
        "run": str(run.path),
        "state": "running" if live else "stopped",
        "trials": len(statuses),
        "done": sum(1 for s in statuses.values() if s.get("status") == "COMPLETED"),
        "running": running,
        "interrupted": interrupted,
        "failed": failed,
        "best": best,
        "objective": objective.name,
        "budget_s": budget,
        "spent_s": spent,
        "disk_bytes": folder_bytes(run.path) if run.path.is_dir() else 0,
        "workers": {p.stem: read_json(p) for p in sorted(run.workers_dir.glob("*.json"))},
    }


def _record_error(run: RunFolder, trial_id: str) -> str:
    return str(run.read_trial_record(trial_id).get("error") or "")


def print_status(run_dir: str | Path) -> None:
    status = search_status(run_dir)
    print(f"{status['run']}: {status['state']}")
    print(
        f"  trials: {status['done']} done, {len(status['running'])} running, {len(status['failed'])} failed"
    )
    now = time.time()
    for trial_id, lease in sorted(status["running"].items()):
        minutes = (now - float(lease.get("since", now))) / 60
        print(f"  running: trial {trial_id} on {lease['holder'].split(':')[0]} for {minutes:.1f} min")
    for trial_id in status["interrupted"]:
        print(f"  interrupted: trial {trial_id} (continues from its last finished epoch on resume)")
    for trial_id, reason in status["failed"]:
        print(f"  failed: trial {trial_id}: {reason or 'no reason recorded'}")
    best = status["best"]
    if best:
        print(
            f"  best so far: trial {best['trial_id']}, {status['objective']} {float(best['score']):.4f} "
            f"after {int(best['epochs_trained'] or 0)} epoch(s)"
        )
    else:
        print("  best so far: none yet")
    if status["budget_s"]:
        left = max(0.0, float(status["budget_s"]) - float(status["spent_s"] or 0))
        print(f"  budget: {left / 60:.1f} of {float(status['budget_s']) / 60:.1f} min left")
    elif status["spent_s"] is not None:
        print(f"  time spent: {float(status['spent_s']) / 60:.1f} min (no time budget)")
    print(f"  disk used: {_size(status['disk_bytes'])}")
