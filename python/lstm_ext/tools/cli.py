"""The command line, ``python -m lstm_ext [COMMAND] [OPTIONS]``: USAGE below is what --help prints."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Optional

from . import arguments, selfcheck

COMMANDS = {
    "check": "the compiled core against the NumPy reference: parity and time per step (the default)",
    "demo": "the main job: LSTM, GRU and vanilla RNN side by side on built-in data, with plots",
    "bench": "the benchmark against torch.nn (and ONNX Runtime); --out FILE writes its report",
}

USAGE = "\n".join([
    "usage: python -m lstm_ext [COMMAND] [OPTIONS]",
    "",
    "commands (the options go after the command; COMMAND --help lists them):",
    *(f"  {name:6} {text}" for name, text in COMMANDS.items()),
    "",
    "examples:",
    "  python -m lstm_ext demo                 every demo on built-in data, written to ./lstm_ext_demo",
    "  python -m lstm_ext demo --quick --only long-memory",
    "  python -m lstm_ext bench --quick        a short benchmark against torch",
    "  python -m lstm_ext check --H 128",
])


_CHECK_OPTIONS = ("--T", "--B", "--I", "--H", "--seed", "--repeats")


def check(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstm_ext check",
                                     description="compiled core vs NumPy reference: parity and time per step")
    parser.add_argument("--T", type=int, default=64, help="time steps (default 64)")
    parser.add_argument("--B", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--I", type=int, default=32, help="input size (default 32)")
    parser.add_argument("--H", type=int, default=64, help="hidden size (default 64)")
    parser.add_argument("--seed", type=int, default=0, help=f"random seed, 0 to {arguments.MAX_SEED} (default 0)")
    parser.add_argument("--repeats", type=int, default=3,
                        help=f"timing repeats, median taken, at most {arguments.MAX_REPEATS} (default 3)")
    args = parser.parse_args(argv)
    # Every number before any work: a bad one fails here in one line (exit code 2).
    for name in ("T", "B", "I", "H"):
        problem = arguments.integer_problem(getattr(args, name), 1)
        if problem:
            parser.error(f"--{name} {problem}")
    problem = arguments.integer_problem(args.repeats, 1, arguments.MAX_REPEATS)
    if problem:
        parser.error(f"--repeats {problem}")
    problem = arguments.seed_problem(args.seed)
    if problem:
        parser.error(f"--seed {problem}")
    problem = arguments.memory_problem(selfcheck.memory_bytes(args.T, args.B, args.I, args.H),
                                       f"--T {args.T} --B {args.B} --I {args.I} --H {args.H}: the self-check")
    if problem:
        parser.error(problem)
    return selfcheck.run(T=args.T, B=args.B, I=args.I, H=args.H, seed=args.seed, repeats=args.repeats)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command = argv.pop(0) if argv and not argv[0].startswith("-") else "check"
    if command not in COMMANDS:
        print(f"python -m lstm_ext: unknown command {command!r}; expected one of {', '.join(COMMANDS)} "
              "(python -m lstm_ext --help)", file=sys.stderr)
        return 2
    if command == "check" and argv and argv[0].startswith("-") and argv[0].split("=")[0] not in _CHECK_OPTIONS:
        # Options with no command are check's: one of another command's options is a misplaced one.
        print(f"python -m lstm_ext: {argv[0]} is not an option of check (the default command); the options go "
              f"after their command, e.g. python -m lstm_ext demo {argv[0]} (python -m lstm_ext --help)",
              file=sys.stderr)
        return 2
    if command == "check":
        return check(argv)
    if command == "demo":
        from . import demos

        return demos.main(argv)
    from . import bench

    return bench.main(argv)


if __name__ == "__main__":
    sys.exit(main())
