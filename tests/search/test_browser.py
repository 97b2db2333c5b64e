"""The report in a real browser: headless Chromium (Debian's package, which `make test` installs),
driven by Playwright through its executable path. Never skipped: without Chromium it fails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from search.cli import main
from tests.cli import copy_run
from tests.search.test_end_to_end import SECTIONS

pytestmark = pytest.mark.slow

# Without the background-networking flags Chromium tries Google's hosts at start; this machine has
# no network, and the test counts every request the page makes.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = (
        os.environ.get("HYPERCNN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if not found:
        pytest.fail("Chromium is not installed: 'make test' installs it (apt-get install chromium)")
    return found


def test_the_report_opens_in_chromium_sorts_and_fetches_nothing(finished_run: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    # Seconds whose order as text (10, 100, 9.5) differs from their order as numbers, so that the
    # numeric sort is tested whatever the trials took.
    run = copy_run(finished_run, tmp_path / "run")
    board = pd.read_csv(run / "report" / "leaderboard.csv", dtype={"trial_id": str, "parent_trial": str})
    board["seconds"] = [[9.5, 10.0, 100.0][i % 3] + i for i in range(len(board))]
    board.to_csv(run / "report" / "leaderboard.csv", index=False)
    assert main(["report", str(run)]) == 0
    page_url = (run / "report" / "index.html").resolve().as_uri()
    console_errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: console_errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_url, wait_until="load")
            for section in SECTIONS:
                assert page.locator(f"section#{section}").count() == 1, section
            # Every figure decoded (a broken data URI has naturalWidth 0).
            widths = page.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)")
            assert widths and all(w > 0 for w in widths)

            table = page.locator("#leaderboard-table")
            header = table.locator("thead th", has_text="trial_id")
            header.click()
            ascending = table.locator("tbody tr td:nth-child(2)").all_inner_texts()
            assert ascending == sorted(ascending) and header.get_attribute("aria-sort") == "ascending"
            header.click()
            descending = table.locator("tbody tr td:nth-child(2)").all_inner_texts()
            assert descending == sorted(ascending, reverse=True)
            assert header.get_attribute("aria-sort") == "descending"

            seconds = table.locator("thead th", has_text="seconds").first
            column = [h.strip() for h in table.locator("thead th").all_inner_texts()].index("seconds") + 1
            seconds.click()
            values = [
                float(v) for v in table.locator(f"tbody tr td:nth-child({column})").all_inner_texts() if v
            ]
            assert values == sorted(values)  # as numbers, not as text

            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert console_errors == []
    assert [url for url in requests if url != page_url and not url.startswith("data:")] == []
