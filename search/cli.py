"""hypercnn: flags -> SearchConfig -> search / report / predict / spaces. Errors: one line, exit 2."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from search import quiet
from search.errors import HyperCNNError

if TYPE_CHECKING:
    from sys import UnraisableHookArgs

USAGE_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; we print one line that says where to look."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message}; see '{self.prog} --help'", file=sys.stderr)
        sys.exit(USAGE_ERROR)


def add_search_arguments(search: argparse.ArgumentParser) -> None:
    """The flags of a search, shared by `search` and `run`."""
    search.add_argument(
        "--data",
        help="cifar10 (Keras download), cifar-10-python.tar.gz, cifar-10-batches-py/, image folder or .zip, "
        ".npz; default: $HYPERCNN_DATA, else cifar10",
    )
    search.add_argument("--space", default="fast", help="search space (see 'hypercnn spaces'); default fast")
    search.add_argument("--out", help="run folder; default results/<space>-seed<seed>")
    search.add_argument("--max-epochs", type=int, default=9, help="Hyperband max_epochs; default 9")
    search.add_argument("--factor", type=int, default=3, help="Hyperband reduction factor; default 3")
    search.add_argument(
        "--hyperband-iterations",
        type=int,
        help="Hyperband iterations; default: as many as the time budget fits (one without a budget)",
    )
    search.add_argument("--seed", type=int, default=0, help="seed for splits, search and training; default 0")
    search.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    search.add_argument("--train-size", help="training images: a count or fraction; default all left")
    search.add_argument(
        "--val-size", default="0.1", help="validation images: a count or fraction; default 0.1"
    )
    search.add_argument(
        "--test-size", help="test images: a count or fraction; default the source's test split, else 0.1"
    )
    search.add_argument("--batch-size", type=int, default=128, help="default 128")
    search.add_argument(
        "--no-verify-md5", dest="verify_md5", action="store_false", help="accept a non-official tarball"
    )
    search.add_argument("--cache-dir", default="~/.cache/hypercnn", help="decoded-data cache")
    search.add_argument("--precision", default="auto", help="auto | float32 | mixed_float16 | mixed_bfloat16")
    search.add_argument("--jit-compile", default="auto", help="XLA: auto | on | off")
    search.add_argument(
        "--kernels",
        default="auto",
        help="auto (time fused against stock Keras kernels on this machine, keep the faster) | fused | stock",
    )
    search.add_argument(
        "--data-on",
        default="auto",
        help="where the training split lives: auto (the device with a GPU or on JAX) | host | device",
    )
    search.add_argument(
        "--sampler",
        default="random",
        help="new configurations after the portfolio: random | model (BOHB-style TPE); default random",
    )
    search.add_argument(
        "--objective",
        default="val_accuracy",
        help="rank trials by val_accuracy | val_macro_f1 (imbalanced data) | val_loss; default val_accuracy",
    )
    search.add_argument("--progress", default="auto", help="auto | bar | epoch | off")
    search.add_argument(
        "--max-failed-trials", type=int, default=3, help="stop after this many failed trials in a row"
    )
    search.add_argument(
        "--model-cache-mb",
        type=int,
        default=256,
        help="memory for finished trials' models kept for their promotions; default 256",
    )
    search.add_argument(
        "--no-flip-averaging",
        dest="flip_averaging",
        action="store_false",
        help="ship the model without averaging each image's and its mirror's predictions",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="hypercnn",
        description="Find, train and ship the best CNN for an image-classification data set.",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's own start-up and log lines (also: HYPERCNN_VERBOSE=1)",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    search = commands.add_parser("search", help="run or resume a Hyperband search")
    add_search_arguments(search)
    search.add_argument(
        "--time-budget",
        help="the search's wall time, e.g. 15m, 90s, 1.5h; a resumed search continues it; default none",
    )
    search.add_argument(
        "--workers",
        default="1",
        help="training processes: 1 (this one), N (a chief and N workers; on a CPU they share the cores) "
        "or auto (one per visible GPU, each pinned to it); default 1",
    )
    search.add_argument(
        "--listen",
        help="HOST:PORT where the chief serves workers of other machines (hypercnn worker); "
        "unauthenticated: a trusted network only",
    )
    search.add_argument(
        "--lease-timeout",
        default="60s",
        help="a worker that renews no lease for this long is lost; its trial goes on elsewhere; default 60s",
    )
    search.add_argument(
        "--tensorboard", action="store_true", help="write per-trial TensorBoard logs under RUN/tensorboard/"
    )

    run = commands.add_parser(
        "run", help="search, then train, test, export and report the final model, all in one time budget"
    )
    add_search_arguments(run)
    run.add_argument(
        "--time-budget",
        required=True,
        help="wall time for the whole job, e.g. 15m; the program decides how much of it to search",
    )

    finalize = commands.add_parser(
        "finalize",
        help="train the chosen trial on train+validation, test it once, export every format, render the page",
    )
    finalize.add_argument("run", help="a run folder written by 'hypercnn search' (needs its data)")
    finalize.add_argument(
        "--retrain", action="store_true", help="retrain even if an exported model is current"
    )
    finalize.add_argument(
        "--time-budget", help="train the final model for as many epochs as fit this wall time, e.g. 5m"
    )

    report = commands.add_parser(
        "report",
        help="render the page from a finalized run folder (no data, no TensorFlow); finalize first if needed",
    )
    report.add_argument("run", help="a run folder written by 'hypercnn run' or 'hypercnn search'")
    report.add_argument("--out", help="where to write the page; default RUN/report/index.html")
    report.add_argument("--retrain", action="store_true", help="finalize again with a fresh final training")
    report.add_argument(
        "--time-budget", help="finalize again, training for as many epochs as fit this wall time, e.g. 5m"
    )

    compare = commands.add_parser("compare", help="one page comparing finalized runs side by side")
    compare.add_argument("runs", nargs="+", help="two or more finalized run folders")
    compare.add_argument("--out", default="compare.html", help="the page to write; default compare.html")

    predict = commands.add_parser(
        "predict", help="classify image files, folders or .npz files with an exported model"
    )
    predict.add_argument(
        "model",
        help="best.keras, saved_model/, model[_dynamic_range].tflite, model.onnx, or a run folder",
    )
    predict.add_argument(
        "images", nargs="+", help="PNG/JPEG files, folders of them, or .npz files (array 'x')"
    )
    predict.add_argument(
        "--format", dest="output_format", help="csv | json | jsonl; default csv (or from --output's suffix)"
    )
    predict.add_argument("--output", help="write the predictions to this file instead of standard output")
    predict.add_argument(
        "--json", action="store_true", help="same as --format jsonl: one JSON object per line"
    )

    worker = commands.add_parser("worker", help="join a running search as a worker (another machine, or GPU)")
    worker.add_argument("--chief", required=True, help="HOST:PORT the search's chief listens on (--listen)")
    worker.add_argument("--out", required=True, help="the search's run folder, shared with the chief")
    worker.add_argument("--name", default="worker", help="how the progress lines name this worker")
    worker.add_argument("--threads", type=int, help="CPU threads for training; default all")
    worker.add_argument(
        "--wait-for-chief",
        default="60s",
        help="give up (exit 2) when no chief answers within this; default 60s",
    )

    status = commands.add_parser("status", help="where a running or stopped search stands")
    status.add_argument("run", help="a run folder")

    commands.add_parser("spaces", help="list the search spaces and their hyper-parameters")
    return parser


def config_from_args(args: argparse.Namespace):
    from search.config import SearchConfig, parse_duration

    return SearchConfig.create(
        data=args.data,
        space=args.space,
        out=args.out,
        max_epochs=args.max_epochs,
        factor=args.factor,
        hyperband_iterations=args.hyperband_iterations,
        seed=args.seed,
        time_budget_s=args.time_budget,
        overwrite=args.overwrite,
        train_size=args.train_size,
        val_size=args.val_size,
        test_size=args.test_size,
        batch_size=args.batch_size,
        verify_md5=args.verify_md5,
        cache_dir=args.cache_dir,
        precision=args.precision,
        jit_compile=args.jit_compile,
        kernels=args.kernels,
        data_on=args.data_on,
        progress=args.progress,
        max_consecutive_failed_trials=args.max_failed_trials,
        flip_averaging=args.flip_averaging,
        sampler=args.sampler,
        objective=args.objective,
        model_cache_mb=args.model_cache_mb,
        **(
            dict(
                workers=args.workers,
                listen=args.listen,
                lease_s=parse_duration(args.lease_timeout),
                tensorboard=args.tensorboard,
            )
            if args.command == "search"
            else {}
        ),
    )


def _print_spaces() -> None:
    from spaces import load_spaces
    from spaces.base import describe_space

    for name, space in load_spaces().items():
        print(f"{name}: {space.description}")
        for row in describe_space(space):
            when = f"  (when {row['when']})" if row["when"] else ""
            print(f"  {row['name']:<27} {row['kind']:<8} {row['allowed']:<32} default {row['default']}{when}")


def _predict(args: argparse.Namespace) -> None:
    from search.predict import load_model, write_predictions

    kind = args.output_format or ("jsonl" if args.json else None)
    if kind is None and args.output:
        kind = {".json": "json", ".jsonl": "jsonl"}.get(Path(args.output).suffix.lower(), "csv")
    kind = kind or "csv"
    if kind not in ("csv", "json", "jsonl"):
        raise HyperCNNError(f"--format {kind!r} is unknown; use csv, json or jsonl")
    predictions = load_model(args.model).predict_files(args.images)
    if args.output:
        with open(args.output, "w", newline="", encoding="utf-8") as target:
            write_predictions(predictions, kind, target)
        print(f"{len(predictions)} predictions written to {args.output}", file=sys.stderr)
    else:
        write_predictions(predictions, kind, sys.stdout)


def _report(args: argparse.Namespace) -> None:
    """Render only when the run is finalized and nothing asks for more: no data, no TensorFlow."""
    from search.config import parse_duration
    from search.report import render_run
    from search.report.artifacts import needs_finalize

    budget = parse_duration(args.time_budget)
    if args.retrain or budget is not None or needs_finalize(args.run):
        from search.finalize import finalize_run

        quiet.load_keras_backend()
        finalize_run(args.run, retrain=args.retrain, time_budget_s=budget)
    print(f"report: {render_run(args.run, args.out)}", flush=True)


# An interrupt Python swallowed is sent again this long after: long enough for the swallowing
# callback to return, short against the seconds a person waits after Ctrl-C.
REDELIVER_AFTER_S = 0.05


@dataclasses.dataclass
class Interrupts:
    """How many SIGINTs interrupted_once turned into a KeyboardInterrupt (0 or 1)."""

    count: int = 0


@contextlib.contextmanager
def interrupted_once() -> Iterator[Interrupts]:
    """Ctrl-C in a terminal reaches a chief and its workers at once, and the chief passes it on to
    its workers too: a second SIGINT while the first is handled (trials saved, workers waited for)
    would cut that short with a traceback. The first raises KeyboardInterrupt; later ones are ignored
    until this command returns. A SIGINT the process inherited ignored stays ignored.

    Python drops an exception raised inside a garbage-collector callback or a __del__ (JAX registers
    such a callback) and hands it to sys.unraisablehook: a KeyboardInterrupt that lands there would be
    lost with later SIGINTs already ignored, so the hook re-arms the handler and sends it again."""
    interrupts = Interrupts()
    previous = signal.getsignal(signal.SIGINT)
    if (
        previous is not signal.default_int_handler
        or threading.current_thread() is not threading.main_thread()
    ):
        yield interrupts
        return

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        interrupts.count = 1
        raise KeyboardInterrupt

    previous_hook = sys.unraisablehook

    def deliver_again(unraisable: UnraisableHookArgs) -> None:
        swallowed = unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt)
        if not swallowed or threading.current_thread() is not threading.main_thread():
            previous_hook(unraisable)
            return
        signal.signal(signal.SIGINT, interrupt)
        resend = threading.Timer(REDELIVER_AFTER_S, os.kill, (os.getpid(), signal.SIGINT))
        resend.daemon = True
        resend.start()

    signal.signal(signal.SIGINT, interrupt)
    sys.unraisablehook = deliver_again
    try:
        yield interrupts
    finally:
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet.set_verbose(args.verbose)
    with interrupted_once() as interrupts:
        code = _run_command(args)
    if interrupts.count:
        # Interrupted, the process is on its way out: a SIGINT still on its way (the chief passing the
        # first one on to its workers, a second Ctrl-C) must not print a traceback from Python's
        # shutdown, as one arriving after the command returned did in a CI run.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code


def _run_command(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args) if args.command in ("search", "run") else None
        if args.command == "search":
            from search.devices import hide_gpus_from_chief, uses_chief

            if uses_chief(config):
                hide_gpus_from_chief()  # before TensorFlow loads: the chief trains nothing
        if args.command in ("search", "run", "finalize", "predict", "spaces"):
            quiet.load_keras_backend()  # these build, train or load models; report and compare render only
        if args.command == "search":
            from search.run import run_search

            run_search(config)
        elif args.command == "run":
            from search.job import run_job

            run_job(config, config.time_budget_s)
        elif args.command == "finalize":
            from search.config import parse_duration
            from search.report import make_report

            make_report(args.run, retrain=args.retrain, time_budget_s=parse_duration(args.time_budget))
        elif args.command == "report":
            _report(args)
        elif args.command == "compare":
            from search.report.compare import compare_runs

            print(f"comparison: {compare_runs(args.runs, args.out)}")
        elif args.command == "predict":
            _predict(args)
        elif args.command == "worker":
            from search.config import parse_duration
            from search.worker import run_worker

            wait_s = parse_duration(args.wait_for_chief)
            return run_worker(args.chief, args.out, args.name, args.threads, wait_s)
        elif args.command == "status":
            from search.status import print_status

            print_status(args.run)
        elif args.command == "spaces":
            _print_spaces()
    except HyperCNNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
