"""The report: `finalize` (search.finalize: retrain, test once, export, write the run folder's report
files) then `render_run` (this package: the page, from the run folder alone, without TensorFlow).

Importing this package imports no TensorFlow; make_report does, when called."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from search.report.render import render_run


@dataclasses.dataclass
class ReportResult:
    html: Path
    model: Path
    test_accuracy: float
    best_trial: str


def make_report(
    run_dir: str | Path, retrain: bool = False, time_budget_s: float | None = None
) -> ReportResult:
    """Finalize the run (retrain the chosen trial, test it, export it), then render its page."""
    from search.finalize import finalize_run

    finalized = finalize_run(run_dir, retrain=retrain, time_budget_s=time_budget_s)
    html = render_run(run_dir)
    print(f"report: {html}\nmodel:  {finalized.run.model_file}", flush=True)
    return ReportResult(html, finalized.run.model_file, finalized.test_accuracy, finalized.trial_id)


__all__ = ["ReportResult", "make_report", "render_run"]
