"""Run the side-by-side benchmark and write BENCHMARKS.md at the repository's root.

    python benchmarks/run.py            # the full run (several minutes), writes BENCHMARKS.md
    python benchmarks/run.py --quick    # a smoke check (CI): fewer rounds, no report unless --out
    python benchmarks/run.py --build "native: /path/venv/bin/python" \
        --build "this build at avx2: python LSTM_EXT_KERNELS=avx2" \
        --build "native, -mno-avx512f: /path/venv2/bin/python vs=this build at avx2"
                                        # and, at the end of the report, this build against
                                        # others (compare_builds.py)

Everything else is lstm_ext.tools.bench (also ``python -m lstm_ext bench``); see its docstring for
the protocol and the roofline.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import compare_builds
from lstm_ext.tools import bench
from lstm_ext._io import write_text_atomic

ROOT = pathlib.Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--build", action="append", default=[], type=compare_builds.parse_variant)
    compare_builds.add_arguments(parser)
    args, argv = parser.parse_known_args()
    if "--quick" not in argv and "--out" not in argv:
        argv += ["--out", str(ROOT / "BENCHMARKS.md")]
    status = bench.main(argv)
    out = argv[argv.index("--out") + 1] if "--out" in argv else None
    if status == 0 and args.build and out:
        variants = {"this build": ([sys.executable], {}, None), **dict(args.build)}
        lines = compare_builds.table(variants, bench.CONFIGS, args.rounds, args.calls, args.threads)
        intro = ("## This build against builds for this machine alone", "",
                 "lstm_ext alone, this (dispatched) build against builds made with LSTM_EXT_NATIVE=ON (one level, "
                 "the flags named), in processes that alternate (benchmarks/compare_builds.py, "
                 f"{args.rounds} rounds): median times, and each build's time over the one named in the "
                 "column's head (above 1: slower than that one).", "")
        report = pathlib.Path(out).read_text() + "\n" + "\n".join([*intro, *lines]) + "\n"
        write_text_atomic(out, report)
    sys.exit(status)
