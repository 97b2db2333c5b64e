"""run_job: search, then train, test, export and report the final model, all inside one time budget."""

from __future__ import annotations

import dataclasses
import time

from search.config import SearchConfig
from search.plan import MAX_SEARCH_SHARE
from search.report import ReportResult, make_report
from search.run import run_search


def run_job(config: SearchConfig, total_s: float, max_search_share: float = MAX_SEARCH_SHARE) -> ReportResult:
    """The search may use at most `max_search_share` of `total_s`, and after its first trial only what
    search.plan says the final training can spare; the report's final training gets the rest.
    `max_search_share` 0 trains the default alone (the bench's default_only)."""
    started = time.time()
    # The first trial (the default, which measures the pace) runs under the same cap either way.
    search_config = dataclasses.replace(config, time_budget_s=MAX_SEARCH_SHARE * total_s)
    searched = run_search(
        search_config, job_budget_s=total_s, job_started=started, max_search_share=max_search_share
    )
    if searched.interrupted:  # Ctrl-C ends the job, not just its search
        raise KeyboardInterrupt
    left = total_s - (time.time() - started)
    print(f"{left / 60:.1f} min of the job's {total_s / 60:.1f} min left for the final model", flush=True)
    return make_report(config.out, retrain=True, time_budget_s=left)
