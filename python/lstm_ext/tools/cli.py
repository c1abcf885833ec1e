"""Command line: ``python -m lstm_ext [check | demo | bench] [options]``.

``check`` (the default) runs the self-check: the compiled core against the NumPy reference on
random data, float64 and float32, forward and backward; it prints the worst relative error per
tensor and the time per step of both, and exits 1 if parity fails.

``demo`` runs the main job: demos of what an LSTM does that a plain RNN cannot, on built-in
data (``lstm_ext.tools.demos``).

``bench`` runs the side-by-side benchmark against torch.nn and the NumPy reference
(``lstm_ext.tools.bench``); ``--out BENCHMARKS.md`` writes its report.
"""

from __future__ import annotations

import argparse
import sys

from . import selfcheck

COMMANDS = ("check", "demo", "bench")


def check(argv) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstm_ext check",
                                     description="compiled core vs NumPy reference: parity and time per step")
    parser.add_argument("--T", type=int, default=64, help="time steps (default 64)")
    parser.add_argument("--B", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--I", type=int, default=32, help="input size (default 32)")
    parser.add_argument("--H", type=int, default=64, help="hidden size (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats, median taken (default 3)")
    args = parser.parse_args(argv)
    for name in ("T", "B", "I", "H", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return selfcheck.run(T=args.T, B=args.B, I=args.I, H=args.H, seed=args.seed, repeats=args.repeats)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    command = argv.pop(0) if argv and not argv[0].startswith("-") else "check"
    if command == "check":
        return check(argv)
    if command == "demo":
        from . import demos

        return demos.main(argv)
    if command == "bench":
        from . import bench

        return bench.main(argv)
    print(f"python -m lstm_ext: unknown command {command!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
