"""Command line: ``python -m lstm_ext [check] [options]``.

``check`` (the default) runs the self-check: the compiled core against the NumPy reference on
random data, float64 and float32, forward and backward; it prints the worst relative error per
tensor and the time per step of both, and exits 1 if parity fails.
"""

from __future__ import annotations

import argparse
import sys

from . import selfcheck


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "check")
    parser = argparse.ArgumentParser(prog="python -m lstm_ext", description="lstm_ext command line")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="compiled core vs NumPy reference: parity and time per step")
    check.add_argument("--T", type=int, default=64, help="time steps (default 64)")
    check.add_argument("--B", type=int, default=8, help="batch size (default 8)")
    check.add_argument("--I", type=int, default=32, help="input size (default 32)")
    check.add_argument("--H", type=int, default=64, help="hidden size (default 64)")
    check.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    check.add_argument("--repeats", type=int, default=3, help="timing repeats, median taken (default 3)")
    args = parser.parse_args(argv)
    for name in ("T", "B", "I", "H", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return selfcheck.run(T=args.T, B=args.B, I=args.I, H=args.H, seed=args.seed, repeats=args.repeats)


if __name__ == "__main__":
    sys.exit(main())
