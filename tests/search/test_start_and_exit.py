"""How commands start (no TensorFlow for config and --help, no TensorFlow chatter) and how a search
leaves the process when it is interrupted."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from search import run_search
from spaces import register_space
from tests.conftest import quick_search_config
from tests.search.failing_space import space_failing_at_fit

ROOT = Path(__file__).resolve().parents[2]


def python(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "HYPERCNN_VERBOSE")}
    return subprocess.run(
        [sys.executable, *(["-c", code] if code else []), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **(env or {})},
        timeout=300,
    )


def test_config_validation_and_help_import_no_tensorflow() -> None:
    code = """
import sys
import time
from search import SearchConfig
from search.cli import main
config = SearchConfig.create(data="x.npz", space="resnet", time_budget_s="5m", val_size="0.2")
# `status` reads the run folder only: it must not wait seconds for TensorFlow, nor print its chatter.
for argv in (["--help"], ["search", "--help"], ["report", "--help"], ["status", "no-such-run"]):
    try:
        main(argv)
    except SystemExit:
        pass
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "keras_tuner"})
print("LOADED", loaded, file=sys.stderr)
"""
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stderr, result.stderr[-500:]


def test_commands_start_without_tensorflow_chatter_unless_verbose() -> None:
    quiet = python("", "-m", "search", "spaces")
    assert quiet.returncode == 0 and "fast:" in quiet.stdout
    assert quiet.stderr == "", quiet.stderr
    verbose = python("", "-m", "search", "--verbose", "spaces")
    assert verbose.returncode == 0 and verbose.stderr.strip(), "--verbose shows TensorFlow's own lines"


def test_a_gpu_tensorflow_cannot_use_is_one_warning_unless_hidden_on_purpose(monkeypatch, tmp_path) -> None:
    from search import quiet

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(quiet, "NVIDIA_DRIVER_GPUS", tmp_path / "no-driver")
    monkeypatch.setattr(quiet, "NVIDIA_DEVICE_NODE", tmp_path / "nvidia0")
    assert quiet.unusable_gpu_warning(0, "") is None  # no GPU at all: nothing to say
    # A GPU's device node, as the driver makes it: TensorFlow found no GPU to use.
    (tmp_path / "nvidia0").touch()
    said = "failed call to cuInit: CUDA_ERROR_NO_DEVICE"
    warning = quiet.unusable_gpu_warning(0, f"some line\n{said}\n")
    assert warning.startswith("warning:") and "\n" not in warning
    assert "pip install 'hypercnn[gpu]'" in warning and said in warning
    assert quiet.unusable_gpu_warning(1, "") is None  # TensorFlow uses it
    # A search's chief hides every GPU from itself on purpose, as may a user.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert quiet.unusable_gpu_warning(0, "") is None


def test_a_ctrl_c_that_python_swallows_in_a_gc_callback_is_delivered_again() -> None:
    """The CI failure at 286340a: a worker's SIGINT landed in JAX's garbage-collector callback,
    Python printed "Exception ignored" and the worker trained on."""
    from search.cli import interrupted_once

    armed = [True]

    def collecting(phase: str, info: dict) -> None:
        if phase == "start" and armed:
            armed.clear()
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(20):  # the handler runs between these bytecodes: its KeyboardInterrupt is dropped
                time.sleep(0.01)

    outside = signal.signal(signal.SIGINT, signal.default_int_handler)
    gc.callbacks.append(collecting)
    try:
        with pytest.raises(KeyboardInterrupt), interrupted_once():
            gc.collect()
            assert not armed  # the callback ran and swallowed the first interrupt
            time.sleep(5)  # interrupted again within 0.05 s, so this never finishes
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        gc.callbacks.remove(collecting)
        signal.signal(signal.SIGINT, outside)


InterruptedSpace = space_failing_at_fit(2, KeyboardInterrupt, "test only: Ctrl-C in the second trial")


def test_a_second_ctrl_c_while_the_first_is_handled_is_ignored() -> None:
    from search.cli import interrupted_once

    # As in a terminal (a background `make test`, or a pytest-xdist worker, has SIGINT handled otherwise).
    outside = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with interrupted_once():
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # the chief passing it on: no second KeyboardInterrupt
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):  # the next command's Ctrl-C works again
            signal.raise_signal(signal.SIGINT)
        # A SIGINT inherited ignored (nohup, a background job) stays ignored.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with interrupted_once():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, outside)


@pytest.mark.slow
def test_ctrl_c_keeps_finished_trials_and_unfreezes_the_garbage_collector(
    tmp_path: Path, tiny_npz: Path, capsys
) -> None:
    register_space("interrupted-test-space")(InterruptedSpace)
    result = run_search(quick_search_config(tmp_path, tiny_npz, space="interrupted-test-space"))
    out = capsys.readouterr().out
    # One line at the start names the device and backend the search trains on.
    assert "training on the CPU (" in out
    # The last line does not call an interrupted search finished.
    assert "search stopped by Ctrl-C: 1/2 trials completed" in out and "search finished" not in out
    assert gc.get_freeze_count() == 0, "the search froze the process's objects and left them frozen"
    trials = pd.read_csv(tmp_path / "run" / "trials.csv", dtype={"trial_id": str})
    assert result.completed == 1 and trials.loc[0, "status"] == "COMPLETED"


@pytest.mark.slow
def test_ctrl_c_in_the_search_of_a_job_ends_the_job(tmp_path: Path, tiny_npz: Path) -> None:
    from search.job import run_job

    register_space("interrupted-test-space")(InterruptedSpace)
    InterruptedSpace.fits = 0
    config = quick_search_config(tmp_path, tiny_npz, space="interrupted-test-space")
    with pytest.raises(KeyboardInterrupt):
        run_job(config, total_s=3600.0)
    # The finished trial is kept; no final model is trained behind the user's back.
    trials = pd.read_csv(tmp_path / "run" / "trials.csv", dtype={"trial_id": str})
    assert len(trials) >= 1 and not (tmp_path / "run" / "model" / "best.keras").exists()


def test_a_sigint_after_an_interrupted_command_returned_prints_no_traceback(tmp_path: Path) -> None:
    """The CI failure at bc9be87: a worker handled Ctrl-C and returned, then the chief's SIGINT passed
    on to it arrived while Python shut down, and the restored default handler printed a traceback."""
    script = tmp_path / "interrupted.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal, sys, time
            import search.status

            def interrupted_status(run):
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the command runs
                time.sleep(5)

            search.status.print_status = interrupted_status
            from search.cli import main

            code = main(["status", "somewhere"])
            os.kill(os.getpid(), signal.SIGINT)  # the chief passing it on, after the command returned
            time.sleep(0.5)
            sys.exit(code)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        # As in a terminal: a background `make test` starts its children with SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert done.returncode == 130 and done.stderr.strip().endswith("interrupted"), done.stderr
