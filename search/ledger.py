"""The time budget belongs to the run: every invocation's seconds are recorded, and a resumed run
continues the budget where the killed one stopped."""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from search.errors import HyperCNNError
from search.runfolder import RunFolder, write_json

# How often the ledger writes what this invocation has spent: a kill loses at most this much.
LEDGER_INTERVAL_S = 2.0


class BudgetLedger:
    """The run's budget and the seconds every invocation spent on it (job.json for hypercnn run,
    search.json for hypercnn search), written every LEDGER_INTERVAL_S by a background thread."""

    def __init__(self, run: RunFolder, total_s: float | None, fresh: bool, path: Path | None = None) -> None:
        self.run = run
        self.path = path or run.job_json
        self.total_s = total_s
        previous: dict[str, Any] = {}
        if not fresh and self.path.is_file():
            try:
                previous = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                raise HyperCNNError(
                    f"{self.path} is damaged; delete it to restart the run's budget from zero"
                ) from None
        self.invocations: list[dict[str, Any]] = list(previous.get("invocations", []))
        self.plan: dict[str, Any] | None = previous.get("plan")
        # The job reached its report; a later invocation with a larger budget goes on from there.
        self.completed = bool(previous.get("completed"))
        self.previous_budget_s = previous.get("time_budget_s")
        self.spent_before = sum(float(i.get("seconds", 0.0)) for i in self.invocations)
        self.started = time.time()
        self.invocations.append(
            {"started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep_writing, name="budget-ledger", daemon=True)

    @property
    def job_started(self) -> float:
        """The wall-clock time the job would have started at, had it run in one go."""
        return self.started - self.spent_before

    def spent_s(self) -> float:
        return self.spent_before + time.time() - self.started

    def write(self) -> None:
        self.invocations[-1]["seconds"] = round(time.time() - self.started, 1)
        write_json(
            self.path,
            {
                "time_budget_s": self.total_s,
                "spent_s": round(self.spent_s(), 1),
                "invocations": self.invocations,
                "plan": self.plan,
                "completed": self.completed,
                # hypercnn status: a ledger written in the last seconds belongs to a live process.
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "written_at": time.time(),
            },
        )

    def _folder_ready(self) -> bool:
        """run_search writes run.json once the folder is checked (and, with --overwrite, cleared):
        writing before then could race the clearing."""
        try:
            return self.run.run_json.stat().st_mtime >= self.started - 1
        except OSError:
            return False

    def _keep_writing(self) -> None:
        while not self._stop.wait(LEDGER_INTERVAL_S):
            if self._folder_ready():
                self.write()

    def __enter__(self) -> BudgetLedger:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._folder_ready():  # bad data: no run folder is left behind
            self.write()
