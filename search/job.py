"""run_job: search, then train, test, export and report the final model, all inside one time budget
that belongs to the run: a resumed job continues the budget where the killed one stopped."""

from __future__ import annotations

import dataclasses
import json
import time

from search.config import SearchConfig
from search.errors import HyperCNNError
from search.finalize import finalize_run
from search.ledger import BudgetLedger
from search.plan import MAX_SEARCH_SHARE
from search.report import ReportResult, render_run
from search.run import run_search
from search.runfolder import RunFolder


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
            ledger.write()  # now, not at the next tick: the final training's reason names the plan's pick
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
