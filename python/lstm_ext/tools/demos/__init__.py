"""The main job: LSTM, GRU and vanilla RNN of the same size, side by side, on built-in data.

    python -m lstm_ext demo                 # every demo, written to ./lstm_ext_demo
    python -m lstm_ext demo --only text --text my_book.txt
    python -m lstm_ext demo --quick         # a smaller budget (seconds), the same thresholds

Each demo trains an LSTM, a GRU and a vanilla (tanh) RNN of the same hidden size with lstm_ext,
prints its progress and results, draws a PNG (when matplotlib is installed; the `demo` extra) in
which each model has one colour, and reports each model's metrics and whether the threshold was
met; ``summary.json`` in the output folder collects them all. The run exits 1 if a demo misses
its threshold.

    two-company   remember day 1 through three identical days: all three do (error < 0.05)
    forecasting   monthly airline passengers 1949-1960: each forecasts 1959-1960 better than
                  seasonal naive
    long-memory   recall a marked symbol after 10 to 200 steps of noise: the LSTM and the GRU
                  solve every length, the RNN fails from 50 on; the gradient flow of all three
    text          character-level language models on a text against the unigram baseline, sampled
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

from lstm_ext._io import write_text_atomic
from lstm_ext._parallel import get_num_threads

from .. import arguments
from ..paths import writable_folder_problem
from .common import Context, Result

__all__ = ["DEMOS", "Context", "Result", "main", "run_demos"]


def _demos() -> dict[str, Callable[[Context], Result]]:
    from . import long_memory, text, two_company, forecasting

    return {"two-company": two_company.run, "forecasting": forecasting.run, "long-memory": long_memory.run,
            "text": text.run}


DEMOS = ("two-company", "forecasting", "long-memory", "text")


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def run_demos(names: Sequence[str], context: Context) -> dict[str, Any]:
    """Run the named demos in order; returns the summary (also written to summary.json)."""
    if context.writes:
        os.makedirs(context.out_dir, exist_ok=True)
    from lstm_ext import __version__

    demos: dict[str, dict[str, Any]] = {}
    summary: dict[str, Any] = {"lstm_ext": __version__, "quick": context.quick, "seed": context.seed, "threads": get_num_threads(),
               "plots": context.plots, "demos": demos}
    functions = _demos()
    start = time.perf_counter()
    for k, name in enumerate(names, 1):
        context.log(f"\n[{k}/{len(names)}] {name}")
        began = time.perf_counter()
        result = functions[name](context)
        seconds = time.perf_counter() - began
        demos[name] = {"passed": result.passed, "threshold": result.threshold, "metrics": result.metrics,
                                  "plot": result.plot, "seconds": round(seconds, 2), **result.details}
        verdict = "passed" if result.passed else "FAILED"
        context.log(f"  {verdict}: {result.threshold} ({seconds:.1f} s)")
    summary["seconds"] = round(time.perf_counter() - start, 2)
    summary["passed"] = all(d["passed"] for d in demos.values())
    if context.writes:
        write_text_atomic(os.path.join(context.out_dir, "summary.json"), json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .text import MAX_CHARACTERS, QUICK_MAX_CHARACTERS, character_limit, text_file_problem

    parser = argparse.ArgumentParser(prog="python -m lstm_ext demo", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=DEMOS, action="append", help="run this demo (repeatable); default: all")
    parser.add_argument("--quick", action="store_true", help="a smaller training budget (the same thresholds)")
    parser.add_argument("--out", default="lstm_ext_demo", help="folder for the plots and summary.json "
                        "(default ./lstm_ext_demo)")
    parser.add_argument("--text", default=None, help="a UTF-8 text file for the text demo, of which it reads at most "
                        f"the first {MAX_CHARACTERS} characters ({QUICK_MAX_CHARACTERS} with --quick; default: an essay "
                        "shipped with lstm_ext)")
    parser.add_argument("--seed", type=int, default=0, help=f"random seed, 0 to {arguments.MAX_SEED} (default 0)")
    parser.add_argument("--distributed", action="store_true", help="train data-parallel over MPI, run under "
                        "mpiexec (lstm_ext.distributed; not the text demo, which uses truncated BPTT)")
    args = parser.parse_args(argv)
    # Every argument before any work: a bad one fails here in one line (exit code 2).
    problem = arguments.seed_problem(args.seed)
    if problem:
        parser.error(f"--seed {problem}")
    if args.text is not None:
        problem = text_file_problem(args.text, character_limit(args.quick))
        if problem:
            parser.error(f"--text {problem}")
    if writable_folder_problem(args.out):  # before any work: a bad --out fails at once
        parser.error(f"--out {writable_folder_problem(args.out)}")
    names = [name for name in DEMOS if args.only is None or name in args.only]
    if args.distributed and "text" in names:
        parser.error("--distributed: the text demo trains with truncated BPTT, which distributed training does not "
                     "support; choose the others with --only (e.g. --only forecasting)")
    plots = _has_matplotlib()
    context = Context(out_dir=args.out, quick=args.quick, seed=args.seed, text_path=args.text, plots=plots)
    ranks = ""
    if args.distributed:
        from lstm_ext.distributed import Group

        context.distributed = Group()
        context.distributed.share_cpus()
        ranks = f" on each of {context.distributed.size} MPI ranks"
        if not context.distributed.is_root:  # rank 0 reports and writes
            context.writes, context.plots, context.log = False, False, lambda line: None
    say = context.log
    say(f"lstm_ext demos{' (quick)' if args.quick else ''}: {', '.join(names)}; output in {args.out}/, "
        f"{get_num_threads()} threads{ranks}")
    if not plots:
        say("matplotlib is not installed: no plots (pip install 'lstm_ext[demo]' or matplotlib to get them)")
    summary = run_demos(names, context)
    say(f"\n{sum(d['passed'] for d in summary['demos'].values())} of {len(names)} demos met their thresholds in "
        f"{summary['seconds']:.0f} s; summary in {os.path.join(args.out, 'summary.json')}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
