"""`make run` as a newcomer gets it: the Makefile's own command and flags, timed and scored, on this
machine as it is and on an emulated slow one.

The slow machines these VMs sometimes are (2 AVX2 cores, a float32 conv peak of 135 to 170 GFLOP/s)
cannot be chosen, so `slow` emulates one: the job and its peak measurement run on one core that a
busy loop shares with them, in float32 (what HyperCNN picks on a CPU without native bfloat16), with
oneDNN held to AVX2 kernels (ONEDNN_MAX_CPU_ISA=AVX2: no AVX-512, so the plan reads the costs measured
for such CPUs, search.hardware.cost_key). How slow that is depends on the VM, so each row carries the
peak measured under its own conditions.

    .venv/bin/python bench/quickstart.py --modes native,slow    # ~22 minutes: results/bench_quickstart.csv
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-train-jpeg.zip"
MODES = {
    "native": "this machine as it is",
    "slow": "emulated slow machine: one core shared with a busy loop, float32, oneDNN capped at AVX2",
}
PEAK_SCRIPT = (
    "import sys; sys.path[:0] = ['bench', '.']\n"
    "from machine import measure_conv_peak\n"
    "print(measure_conv_peak('float32')[0])\n"
)


def makefile_run_flags() -> list[str]:
    """RUN_FLAGS as the Makefile sets them (continuation lines joined): the command under test is
    `make run`'s own, not a copy of it."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    found = re.search(r"^RUN_FLAGS \?=(.*)$", text, re.MULTILINE)
    if found is None:
        raise SystemExit("Makefile: no 'RUN_FLAGS ?=' line; bench/quickstart.py reads make run's flags there")
    return shlex.split(found.group(1))


@contextlib.contextmanager
def conditions(mode: str) -> Iterator[list[str]]:
    """The command prefix that puts a process under `mode`'s conditions, with the busy loop running
    for as long as the block lasts."""
    if mode == "native":
        yield []
        return
    busy = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", "while True: pass"])
    try:
        yield ["taskset", "-c", "0", "env", "ONEDNN_MAX_CPU_ISA=AVX2"]
    finally:
        busy.kill()
        busy.wait()


def run_mode(mode: str, data: str, work: Path) -> dict:
    import pandas as pd
    from machine import machine_row

    out = work / mode / "run"
    shutil.rmtree(out.parent, ignore_errors=True)
    out.parent.mkdir(parents=True)
    flags = makefile_run_flags() + ["--progress", "off"]
    if mode == "slow":
        flags += ["--precision", "float32"]
    with conditions(mode) as prefix:
        measured = subprocess.run(
            [*prefix, sys.executable, "-c", PEAK_SCRIPT], cwd=ROOT, check=True, capture_output=True, text=True
        )
        peak = float(measured.stdout.split()[-1])
        print(f"[{mode}] float32 conv peak {peak:.0f} GFLOP/s; running make run's command", flush=True)
        hypercnn = str(ROOT / ".venv" / "bin" / "hypercnn")
        command = [*prefix, hypercnn, "run", "--data", data, "--out", str(out)]
        started = time.time()
        with open(out.parent / "log.txt", "w") as log:
            subprocess.run([*command, *flags], cwd=ROOT, check=True, stdout=log, stderr=subprocess.STDOUT)
        wall = time.time() - started
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    job = json.loads((out / "job.json").read_text())
    env = json.loads((out / "env.json").read_text())
    trials = len(pd.read_csv(out / "trials.csv"))
    row = {
        "run": f"quickstart-{mode}",
        "mode": mode,
        "test_accuracy": metrics["test_accuracy"],
        "test_images": metrics["test_images"],
        "trials": trials,
        "final_trial": metrics["best_trial"],
        "retrain_epochs": metrics["retrain_epochs"],
        "chosen_because": metrics["chosen_because"],
        "plan": job["plan"]["describe"],
        "wall_seconds": round(wall, 1),
        "budget_seconds": job["time_budget_s"],
        "flags": " ".join(flags),
    }
    row.update(machine_row(peak, precision=env["hardware"]["precision"]))  # what the run itself picked
    if mode == "slow":
        row["cores"] = 1
        row["machine"] = f"{row['cpu']}, {MODES['slow']}, float32 conv peak {peak:.0f} GFLOP/s"
    print(f"[{mode}] {100 * row['test_accuracy']:.2f} % in {wall:.0f} s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--modes", default="native,slow", help=f"any of {', '.join(MODES)}")
    parser.add_argument("--work", default="/tmp/hypercnn-quickstart", help="where the runs go")
    parser.add_argument("--output", default=str(ROOT / "results" / "bench_quickstart.csv"))
    args = parser.parse_args()
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise SystemExit(f"--modes: unknown {', '.join(unknown)}; choose from {', '.join(MODES)}")

    import pandas as pd
    from machine import read_rows

    rows = [run_mode(mode, args.data, Path(args.work)) for mode in modes]
    table = pd.DataFrame(rows)
    target = Path(args.output)
    # Each mode is its own machine: earlier rows of the other mode are kept only from this commit.
    earlier = read_rows(target) if target.is_file() else pd.DataFrame()
    if not earlier.empty:
        earlier = earlier[~earlier["run"].isin(table["run"]) & (earlier["commit"] == table.iloc[0]["commit"])]
    table = pd.concat([earlier, table], ignore_index=True) if not earlier.empty else table
    table.to_csv(target, index=False)
    print(table[["mode", "test_accuracy", "final_trial", "retrain_epochs", "wall_seconds"]].to_string())
    print(f"written: {target}")


if __name__ == "__main__":
    main()
