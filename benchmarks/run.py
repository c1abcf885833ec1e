"""Run the side-by-side benchmark and write BENCHMARKS.md at the repository's root.

    python benchmarks/run.py            # the full run (a few minutes), writes BENCHMARKS.md
    python benchmarks/run.py --quick    # a smoke check (CI): fewer rounds, no report unless --out

Everything else is lstm_ext.bench (also ``python -m lstm_ext bench``); see its docstring for
the protocol and the roofline.
"""

from __future__ import annotations

import pathlib
import sys

from lstm_ext import bench

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--quick" not in argv and "--out" not in argv:
        argv += ["--out", str(pathlib.Path(__file__).resolve().parent.parent / "BENCHMARKS.md")]
    sys.exit(bench.main(argv))
