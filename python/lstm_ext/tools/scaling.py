"""Data-parallel scaling: training throughput of one model on 1 or more MPI ranks.

    python -m lstm_ext.tools.scaling                      # one process, all its threads
    mpiexec -n 2 python -m lstm_ext.tools.scaling         # two ranks sharing the machine's CPUs

A Sequential (LSTM, LastStep, Linear) trained with Adam on synthetic data for --steps optimizer
steps of a --batch global batch (after --warmup steps not counted), at the two model sizes of
BENCHMARKS.md's scaling table (or --hidden). Rank 0 prints one JSON line per size: samples per
second, seconds per step, seconds of that in the gradient allreduce (waiting for the slowest rank
included), the gradient's bytes, the ranks and each rank's threads.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

import lstm_ext

if TYPE_CHECKING:
    from lstm_ext.distributed import Group

SIZES = (128, 512)  # hidden sizes; T = 50, input 32, global batch 64, float32


def measure(hidden: int, T: int, batch: int, steps: int, warmup: int, group: Optional[Group]) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    samples = batch * (steps + warmup)
    X = rng.standard_normal((samples, T, 32)).astype(np.float32)
    y = rng.standard_normal((samples, 1)).astype(np.float32)
    model = lstm_ext.Sequential(lstm_ext.LSTM(32, hidden, batch_first=True, seed=0), lstm_ext.LastStep(),
                                lstm_ext.Linear(hidden, 1, seed=0))
    model.compile("mse", lstm_ext.Adam(lr=1e-3))
    distributed = group if group is not None else False
    model.fit(X[:batch * warmup], y[:batch * warmup], batch_size=batch, shuffle=False, verbose=0,
              distributed=distributed)
    communicating = group.seconds_communicating if group is not None else 0.0
    start = time.perf_counter()
    model.fit(X[batch * warmup:], y[batch * warmup:], batch_size=batch, shuffle=False, verbose=0,
              distributed=distributed)
    seconds = time.perf_counter() - start
    communicating = (group.seconds_communicating - communicating) if group is not None else 0.0
    gradient_bytes = sum(g.nbytes for g in model.grads.values())
    return {"hidden": hidden, "T": T, "batch": batch, "ranks": group.size if group is not None else 1,
            "threads": lstm_ext.get_num_threads(), "samples_per_second": batch * steps / seconds,
            "seconds_per_step": seconds / steps, "allreduce_seconds_per_step": communicating / steps,
            "gradient_bytes": gradient_bytes}


def allreduce_seconds(gradient_bytes: float, machines: int, bandwidth: float, latency: float) -> float:
    """A ring allreduce's time: 2·(N − 1)/N · bytes / bandwidth + 2·(N − 1) · latency."""
    if machines == 1:
        return 0.0
    return 2 * (machines - 1) / machines * gradient_bytes / bandwidth + 2 * (machines - 1) * latency


def estimate(gradient_bytes: float, step_seconds: float, batch: int, machines: int, bandwidth: float,
             latency: float) -> dict[str, float]:
    """N machines like this one on a fixed global batch (each computes batch / N: its step takes
    step_seconds / N, the allreduce not overlapped) and on a fixed batch per machine (each
    computes `batch`); samples per second and the allreduce's share of a step, for both."""
    exchange = allreduce_seconds(gradient_bytes, machines, bandwidth, latency)
    strong = step_seconds / machines + exchange
    weak = step_seconds + exchange
    return {"machines": machines, "allreduce_seconds": exchange,
            "fixed_global_samples_per_second": batch / strong, "fixed_global_exchange_share": exchange / strong,
            "per_machine_samples_per_second": machines * batch / weak, "per_machine_exchange_share": exchange / weak}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstm_ext.tools.scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, action="append", help="hidden size (repeatable); default 128 and 512")
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--batch", type=int, default=64, help="global batch (default 64)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-share", action="store_true", help="every rank keeps all the machine's CPUs and "
                        "threads (what the ranks did before they split the CPUs; for comparison)")
    args = parser.parse_args(argv)
    group: Optional[Group] = None
    from lstm_ext.distributed import Group

    try:
        group = Group()
    except ImportError:
        group = None
    if group is not None and group.size == 1:
        group = None  # one process: no MPI in the loop at all
    if group is not None and args.no_share:
        group.share_cpus = lambda: None  # type: ignore[method-assign, assignment, return-value]  # a no-op
    for hidden in args.hidden or SIZES:
        result = measure(hidden, args.T, args.batch, args.steps, args.warmup, group)
        if group is None or group.is_root:
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
