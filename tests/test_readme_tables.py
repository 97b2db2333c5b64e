"""README.md's benchmark tables are what bench/tables.py generates from results/*.csv: none typed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.bench_scripts import load_bench_script

ROOT = Path(__file__).resolve().parents[1]


def load_tables_module():
    return load_bench_script("tables")


def test_readme_tables_are_generated_from_the_csvs() -> None:
    tables = load_tables_module()
    readme = (ROOT / "README.md").read_text()
    for name in tables.RENDERERS:
        assert f"<!-- table:{name} -->" in readme, f"README.md has no place for {name}"
    assert tables.render_readme(readme) == readme, "run: python bench/tables.py"


def test_every_benchmark_row_names_its_commit_and_machine() -> None:
    for csv in sorted((ROOT / "results").glob("bench_*.csv")):
        table = pd.read_csv(csv)
        for column in ("commit", "machine", "cpu", "cores", "float32_peak_gflop_per_s", "date", "precision"):
            assert column in table.columns and table[column].notna().all(), f"{csv.name}: {column}"
        # One table, one commit and one machine.
        assert table["commit"].nunique() == 1 and table["cpu"].nunique() == 1, csv.name


def test_a_portfolio_candidate_is_compared_with_the_default_of_its_own_seed() -> None:
    tables = load_tables_module()
    common = {"space": "fast", "default_epochs": 50, "values": "{}", "cost_vs_default": 1.0, "epochs": 50}
    common |= {
        "commit": "abc1234",
        "date": "2026-12-07",
        "machine": "a CPU",
        "command": "python bench/portfolio.py",
    }
    rows = [
        {**common, "seed": 0, "candidate": "default", "val_accuracy": 0.80},
        {**common, "seed": 0, "candidate": "cutout", "val_accuracy": 0.81},
        {**common, "seed": 1, "candidate": "default", "val_accuracy": 0.78},
        {**common, "seed": 1, "candidate": "cutout", "val_accuracy": 0.79},
    ]
    rendered = tables.portfolio_table(pd.DataFrame(rows))
    cutout_rows = [line for line in rendered.splitlines() if "`cutout`" in line]
    # Each seed's cutout led its own default by one point (not seed 1's by -1.00 against seed 0's).
    assert len(cutout_rows) == 2 and all(line.endswith("| +1.00 |") for line in cutout_rows)
    # With several seeds, each row says its seed.
    assert [line.split(" | ")[1] for line in cutout_rows] == ["0", "1"]
    assert "| seed |" in rendered
    one_seed = tables.portfolio_table(pd.DataFrame(rows[:2]))
    assert "| seed |" not in one_seed


def test_hypercnn_is_compared_with_default_only_s_mean_over_its_seeds() -> None:
    tables = load_tables_module()
    common = {"budget_seconds": 300, "val_accuracy": 0.5, "trials": 1, "epochs": 30, "search_seconds": 5}
    common |= {"wall_seconds": 300, "precision": "float32", "note": None, "test_accuracy_spread": None}
    common |= {"commit": "abc1234", "date": "2026-12-07", "machine": "a CPU", "command": "python bench/x.py"}
    rows = [
        {**common, "system": "default_only", "sampler": None, "seed": "0", "test_accuracy": 0.83},
        {**common, "system": "default_only", "sampler": None, "seed": "1", "test_accuracy": 0.79},
        {**common, "system": "default_only", "sampler": None, "seed": "mean", "test_accuracy": 0.81},
        {**common, "system": "hypercnn", "sampler": "random", "seed": "0", "test_accuracy": 0.82},
    ]
    rendered = tables.search_quality_table(pd.DataFrame(rows))
    # Against the mean of its seeds (+1.00), not its first seed's draw (-1.00).
    assert "HyperCNN against its default alone: +1.00 points" in rendered
    single = tables.search_quality_table(pd.DataFrame(rows[:1] + rows[3:]))
    assert "HyperCNN against its default alone: -1.00 points" in single
