"""A training run for tests/test_distributed.py, one process or one rank of an mpiexec job.

    python distributed_worker.py CASE DTYPE OUT [--distributed] [--checkpoint F] [--die-after K]
                                 [--hang-after K] [--timeout S]

CASE 'sequence to one' (LSTM, mse, lengths, validation, Adam with clipping) or 'sequence to
sequence' (Embedding, GRU, cross-entropy over the valid steps, SGD with momentum). Rank 0 (or the
single process) writes the final weights to OUT (.npz) with the history. --die-after K: rank 1
kills itself (SIGKILL) in its K-th optimizer step; --hang-after K: rank 1 sleeps there instead.
"""

import argparse
import json
import os
import signal
import time

import numpy as np

import lstm_ext

parser = argparse.ArgumentParser()
parser.add_argument("case")
parser.add_argument("dtype")
parser.add_argument("out")
parser.add_argument("--distributed", action="store_true")
parser.add_argument("--checkpoint")
parser.add_argument("--die-after", type=int)
parser.add_argument("--hang-after", type=int)
parser.add_argument("--timeout", type=float, default=600.0)
args = parser.parse_args()
dtype = np.dtype(args.dtype)

rng = np.random.default_rng(0)
if args.case == "sequence to one":
    X = rng.standard_normal((50, 12, 3)).astype(dtype)
    lengths = rng.integers(3, 13, size=50)
    y = rng.standard_normal((50, 2)).astype(dtype)
    model = lstm_ext.Sequential(lstm_ext.LSTM(3, 16, batch_first=True, dtype=dtype, seed=1),
                                lstm_ext.LastStep(dtype=dtype), lstm_ext.Linear(16, 2, dtype=dtype, seed=2))
    model.compile("mse", lstm_ext.Adam(lr=1e-2), clip_grad_norm=1.0)
    fit = dict(epochs=3, batch_size=16, lengths=lengths, validation_data=(X[:10], y[:10], lengths[:10]))
else:
    tokens = rng.integers(0, 6, size=(40, 11))
    X, y = tokens[:, :-1], tokens[:, 1:]
    lengths = rng.integers(2, 11, size=40)
    model = lstm_ext.Sequential(lstm_ext.Embedding(6, 5, dtype=dtype, seed=0),
                                lstm_ext.GRU(5, 12, batch_first=True, dtype=dtype, seed=1),
                                lstm_ext.Linear(12, 6, dtype=dtype, seed=2))
    model.compile("cross_entropy", lstm_ext.SGD(lr=0.2, momentum=0.9))
    fit = dict(epochs=3, batch_size=12, lengths=lengths)

group = None
if args.distributed:
    from lstm_ext.distributed import Group

    group = Group(timeout=args.timeout)
    if group.rank == 1 and (args.die_after or args.hang_after):
        step, count = model.optimizer.step, {"n": 0}

        def failing_step(grads):
            count["n"] += 1
            if count["n"] == args.die_after:
                os.kill(os.getpid(), signal.SIGKILL)
            if count["n"] == args.hang_after:
                time.sleep(3600)
            step(grads)

        model.optimizer.step = failing_step

if args.checkpoint:
    fit.update(checkpoint=args.checkpoint, checkpoint_every=2, resume=True)
history = model.fit(X, y, verbose=0, distributed=group if group is not None else False, **fit)
if group is None or group.is_root:
    np.savez(args.out, **model.state_dict())
    print(json.dumps({"history": history, "threads": lstm_ext.get_num_threads(),
                      "cpus": sorted(os.sched_getaffinity(0))}))
