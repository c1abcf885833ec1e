"""A training run for tests/test_distributed.py, one process or one rank of an mpiexec job.

    python distributed_worker.py CASE DTYPE OUT [--distributed] [--checkpoint F] [--die-after K]
                                 [--hang-after K] [--timeout S]

CASE 'sequence to one' (LSTM, mse, lengths, validation, Adam with clipping) or 'sequence to
sequence' (Embedding, GRU, cross-entropy over the valid steps, SGD with momentum). Rank 0 (or the
single process) writes the final weights to OUT (.npz) with the history. --die-after K: rank 1
kills itself (SIGKILL) in its K-th optimizer step; --hang-after K: rank 1 sleeps there instead.

--disagree A,B,...: instead, one fit of CASE per name, in turn, rank 1's differing from the
others' in that one thing (disagreeing_run); rank r writes OUT.rank{r}.json: a list of
{"disagree": name, "refused": the ValueError's message or null, "seconds"}, one per fit.
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
parser.add_argument("--disagree")
args = parser.parse_args()


def training_run(case, dtype, hidden=16, options=None):
    """(model, X, y, fit's keyword arguments) of CASE; `options` go to the recurrent layer."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    if case == "sequence to one":
        X = rng.standard_normal((50, 12, 3)).astype(dtype)
        lengths = rng.integers(3, 13, size=50)
        y = rng.standard_normal((50, 2)).astype(dtype)
        model = lstm_ext.Sequential(lstm_ext.LSTM(3, hidden, batch_first=True, dtype=dtype, seed=1, **(options or {})),
                                    lstm_ext.LastStep(dtype=dtype), lstm_ext.Linear(hidden, 2, dtype=dtype, seed=2))
        model.compile("mse", lstm_ext.Adam(lr=1e-2), clip_grad_norm=1.0)
        fit = dict(epochs=3, batch_size=16, lengths=lengths, validation_data=(X[:10], y[:10], lengths[:10]))
    else:
        tokens = rng.integers(0, 6, size=(40, 11))
        X, y = tokens[:, :-1], tokens[:, 1:]
        lengths = rng.integers(2, 11, size=40)
        model = lstm_ext.Sequential(lstm_ext.Embedding(6, 5, dtype=dtype, seed=0),
                                    lstm_ext.GRU(5, hidden, batch_first=True, dtype=dtype, seed=1, **(options or {})),
                                    lstm_ext.Linear(hidden, 6, dtype=dtype, seed=2))
        model.compile("cross_entropy", lstm_ext.SGD(lr=0.2, momentum=0.9))
        fit = dict(epochs=3, batch_size=12, lengths=lengths)
    return model, X, y, fit


def disagreeing_run(name, case, dtype):
    """training_run as rank 1 builds it when it differs from the others in `name`."""
    if name == "dtype":
        dtype = "float64" if dtype == "float32" else "float32"
    model, X, y, fit = training_run(case, dtype, **{
        "hidden_size": dict(hidden=8), "zoneout": dict(options=dict(zoneout=(0.5, 0.5))),
        "recurrent_dropout": dict(options=dict(recurrent_dropout=0.3))}.get(name, {}))
    if name in ("seed", "batch_size", "epochs"):
        fit[name] = {"seed": 1, "batch_size": fit["batch_size"] - 1, "epochs": fit["epochs"] + 1}[name]
    elif name == "samples":  # one sample less
        X, y, fit["lengths"] = X[:-1], y[:-1], fit["lengths"][:-1]
    elif name == "values":  # the same shapes, one value changed
        X = X.copy()
        X[-1, 0] += 1
    elif name == "weights after the broadcast":  # rank 1 loads other weights than rank 0 sent
        load = model.load_state_dict
        model.load_state_dict = lambda state: load({k: v + 1 if k.endswith("bias") else v for k, v in state.items()})
    elif name not in ("hidden_size", "dtype", "zoneout", "recurrent_dropout"):
        raise ValueError(f"--disagree: no such difference: {name}")
    return model, X, y, fit


dtype = np.dtype(args.dtype)
model, X, y, fit = training_run(args.case, dtype)

group = None
if args.distributed:
    from lstm_ext.distributed import Group

    group = Group(timeout=args.timeout)
    if args.disagree:
        results = []
        for name in args.disagree.split(","):
            if group.rank == 1:
                model, X, y, fit = disagreeing_run(name, args.case, args.dtype)
            else:
                model, X, y, fit = training_run(args.case, args.dtype)
            start = time.perf_counter()
            try:
                model.fit(X, y, verbose=0, distributed=group, **fit)
                refused = None
            except ValueError as error:
                refused = str(error)
            results.append({"disagree": name, "refused": refused, "seconds": time.perf_counter() - start})
        with open(f"{args.out}.rank{group.rank}.json", "w") as file:  # (the ranks' stdout may interleave)
            json.dump(results, file)
        raise SystemExit(0)
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
