"""run_job: search, then train, test, export and report the final model, all inside one time budget
that belongs to the run: a resumed job continues the budget where the killed one stopped."""

from __future__ import annotations

import dataclasses
import datetime
import json
import threading
import time
from typing import Any

from search.config import SearchConfig
from search.errors import HyperCNNError
from search.finalize import finalize_run
from search.plan import MAX_SEARCH_SHARE
from search.report import ReportResult, render_run
from search.run import run_search
from search.runfolder import RunFolder, write_json

# How often the ledger writes what this invocation has spent: a kill loses at most this much.
LEDGER_INTERVAL_S = 2.0


class BudgetLedger:
    """job.json: the run's budget, and the seconds every invocation of hypercnn run spent on it,
    written every LEDGER_INTERVAL_S by a background thread while the job runs."""

    def __init__(self, run: RunFolder, total_s: float, fresh: bool) -> None:
        self.run = run
        self.total_s = total_s
        previous: dict[str, Any] = {}
        if not fresh and run.job_json.is_file():
            try:
                previous = json.loads(run.job_json.read_text())
            except json.JSONDecodeError:
                raise HyperCNNError(
                    f"{run.job_json} is damaged; delete it to restart the run's budget from zero"
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
            self.run.job_json,
            {
                "time_budget_s": self.total_s,
                "spent_s": round(self.spent_s(), 1),
                "invocations": self.invocations,
                "plan": self.plan,
                "completed": self.completed,
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
        self.write()


def run_job(config: SearchConfig, total_s: float, max_search_share: float = MAX_SEARCH_SHARE) -> ReportResult:
    """The search may use at most `max_search_share` of `total_s`, and after its first trial only what
    search.plan says the final training can spare; the report's final training gets the rest.
    `max_search_share` 0 trains the default alone (the bench's default_only)."""
    run = RunFolder(config.out)
    ledger = BudgetLedger(run, total_s, fresh=config.overwrite)
    grown = ledger.previous_budget_s is None or total_s > ledger.previous_budget_s
    if ledger.completed and not grown and run.html.is_file():
        # `make run` twice: the finished job is shown, not an error.
        print(
            f"{run.path} already finished inside its {total_s / 60:.1f} min budget: report {run.html}; "
            "give a larger --time-budget to go on searching and training, or --overwrite to start afresh",
            flush=True,
        )
        metrics = json.loads(run.metrics_json.read_text())
        return ReportResult(run.html, run.model_file, metrics["test_accuracy"], metrics["best_trial"])
    if ledger.spent_before >= total_s:
        raise HyperCNNError(
            f"{run.path} has spent its whole budget ({ledger.spent_before / 60:.1f} of "
            f"{total_s / 60:.1f} min); "
            "give a larger --time-budget to continue it, or --overwrite to start afresh"
        )
    if ledger.spent_before:
        print(
            f"continuing the run's budget: {ledger.spent_before / 60:.1f} of {total_s / 60:.1f} min spent "
            "before, the rest is this invocation's",
            flush=True,
        )
    with ledger:
        started = ledger.job_started
        # The first trial (the default, which measures the pace) runs under the same cap either way.
        search_config = dataclasses.replace(config, time_budget_s=MAX_SEARCH_SHARE * total_s)
        searched = run_search(
            search_config, job_budget_s=total_s, job_started=started, max_search_share=max_search_share
        )
        if searched.plan is not None:
            ledger.plan = {**dataclasses.asdict(searched.plan), "describe": searched.plan.describe()}
        if searched.interrupted:  # Ctrl-C ends the job, not just its search
            raise KeyboardInterrupt
        left = total_s - (time.time() - started)
        print(f"{left / 60:.1f} min of the job's {total_s / 60:.1f} min left for the final model", flush=True)
        finalized = finalize_run(config.out, retrain=True, time_budget_s=left)
        ledger.completed = True
        ledger.write()  # before rendering, so the page shows the time spent
        html = render_run(config.out)
    print(f"report: {html}\nmodel:  {run.model_file}", flush=True)
    return ReportResult(html, run.model_file, finalized.test_accuracy, finalized.trial_id)
