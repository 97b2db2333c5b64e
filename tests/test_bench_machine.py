"""A bench row names what limits oneDNN, so that an emulated CPU never passes for the real one."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from tests.bench_scripts import load_bench_script


def load_machine():
    return load_bench_script("machine")


def test_a_row_run_with_avx512_switched_off_is_another_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = load_machine()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    native = machine.machine_row(231.0, "float32")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    capped = machine.machine_row(231.0, "float32")
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in capped["machine"] and "ONEDNN_MAX_CPU_ISA" not in native["machine"]
    # The command repeats the run: the setting comes first.
    assert capped["command"].startswith("ONEDNN_MAX_CPU_ISA=AVX2 ")
    assert not native["command"].startswith("ONEDNN")
    # Same commit, cores and peak: only the limit tells them apart, and merge_rows keeps them apart.
    assert not machine.same_machine_and_commit(pd.Series(native), pd.Series(capped))
    assert machine.same_machine_and_commit(pd.Series(capped), pd.Series(capped))


def test_a_row_run_on_fewer_cores_than_the_machine_has_says_so_and_its_command_pins_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    machine = load_machine()
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    everything = os.sched_getaffinity(0)
    if len(everything) < 2:
        pytest.skip("needs a machine with two CPUs to pin one")
    one = min(everything)
    os.sched_setaffinity(0, {one})
    try:
        pinned = machine.machine_row(117.0, "float32")
    finally:
        os.sched_setaffinity(0, everything)
    whole = machine.machine_row(231.0, "float32")
    assert pinned["cores"] == 1 and ", 1 core," in pinned["machine"]
    # A shell repeats it: the setting, then the pinning, then the command.
    assert pinned["command"].startswith(f"ONEDNN_MAX_CPU_ISA=AVX2 taskset -c {one} ")
    assert "taskset" not in whole["command"]
    assert not machine.same_machine_and_commit(pd.Series(whole), pd.Series(pinned))


def test_rows_of_a_commit_that_reads_as_a_number_are_merged_not_dropped(tmp_path) -> None:
    machine = load_machine()
    row = {
        "commit": "072e925",  # 72e925 read as a number is infinity
        "machine": "AMD EPYC, 1 core",
        "cpu": "AMD EPYC",
        "cores": 1,
        "float32_peak_gflop_per_s": 115.0,
        "date": "2026-12-07",
        "precision": "float32",
    }
    target = tmp_path / "table.csv"
    pd.DataFrame([{**row, "run": "default_only-0"}]).to_csv(target, index=False)
    merged = machine.merge_rows(target, pd.DataFrame([{**row, "run": "hypercnn-0"}]), key="run")
    assert sorted(merged["run"]) == ["default_only-0", "hypercnn-0"]
