"""A bench row names what limits oneDNN, so that an emulated CPU never passes for the real one."""

from __future__ import annotations

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
