"""Compare builds or kernel levels of lstm_ext side by side, in processes that alternate.

    python benchmarks/compare_builds.py \\
        "dispatched: /path/venv-a/bin/python" \\
        "native, -march=native: /path/venv-b/bin/python" \\
        "dispatched at avx2: /path/venv-a/bin/python LSTM_EXT_KERNELS=avx2" [--rounds 9] [--only training]

Each variant is 'NAME: PYTHON [VAR=VALUE ...] [vs=OTHER]': the Python of an environment with lstm_ext
installed (each build in an environment of its own), environment variables for its processes,
and the variant its times are set against (default the first). Every
round runs one process per variant (the order alternating between rounds), each timing lstm_ext
alone on the benchmark's configurations (lstm_ext.tools.bench.CONFIGS); the table gives the median
time per variant and the median over the rounds of each variant's time over its reference's (above
1: slower than that one).
BENCHMARKS.md's "Kernel levels" section holds a run (the dispatched build against builds with
-march=native).
"""

from __future__ import annotations

import argparse
import statistics
import sys

from lstm_ext.tools import bench


def parse_variant(text: str):
    """'NAME: PYTHON [VAR=VALUE ...] [vs=OTHER NAME]' -> (NAME, ([PYTHON], {VAR: VALUE}, OTHER NAME or None))."""
    text, _, against = text.partition(" vs=")
    name, _, rest = text.partition(": ")
    words = rest.split()
    if not name or not words or any("=" not in w for w in words[1:]):
        raise argparse.ArgumentTypeError(f"expected 'NAME: PYTHON [VAR=VALUE ...] [vs=OTHER NAME]', got {text!r}")
    env = dict(word.split("=", 1) for word in words[1:])
    return name.strip(), ([words[0]], env, against.strip() or None)


def table(variants: dict, configs, rounds: int, calls: int, threads: int) -> list[str]:
    """The Markdown table of a comparison: median times, and each variant's time over its reference's."""
    unknown = [v[2] for v in variants.values() if v[2] is not None and v[2] not in variants]
    if unknown:
        raise ValueError(f"vs={unknown[0]!r}: expected the name of another variant, one of {list(variants)}")
    samples = bench.time_in_processes({n: v[:2] for n, v in variants.items()}, configs, rounds, calls, threads,
                                      log=lambda line: print(line, file=sys.stderr))
    names = list(variants)
    against = {n: variants[n][2] or names[0] for n in names[1:]}  # each variant's time over this one's
    lines = ["| configuration | " + " | ".join(names) + " | " + " | ".join(f"{n} / {against[n]}" for n in names[1:])
             + " |", "|" + "|".join("---" for _ in range(len(names) * 2)) + "|"]
    for cfg in configs:
        medians = [bench._ms(statistics.median(s[cfg.label] for s in samples[n]), cfg) for n in names]
        ratios = [statistics.median(b[cfg.label] / a[cfg.label] for a, b in zip(samples[against[n]], samples[n]))
                  for n in names[1:]]
        lines.append(f"| {cfg.label} | " + " | ".join(medians) + " | " + " | ".join(f"{r:.3f}" for r in ratios) + " |")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=9, help="processes per variant (default 9)")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per configuration and process (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="threads (default 2)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", type=parse_variant, help="'NAME: PYTHON [VAR=VALUE ...] [vs=OTHER]'")
    parser.add_argument("--only", default=None, help="the configurations whose label contains this text")
    add_arguments(parser)
    args = parser.parse_args(argv)
    configs = [c for c in bench.CONFIGS if args.only is None or args.only in c.label]
    print("\n".join(table(dict(args.variants), configs, args.rounds, args.calls, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
