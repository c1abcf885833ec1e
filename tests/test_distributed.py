"""Data-parallel training over MPI (lstm_ext.distributed): under mpiexec with 2 and 3 ranks the
weights equal those of one process on the same global batches; a rank that dies ends the job
and the run resumes from its checkpoint on another number of ranks; a rank that hangs makes the
others fail with a clear error within the timeout. Needs mpi4py and an mpiexec (the
'distributed' extra); skipped without them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_parity

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
TOLERANCE = {"float32": 1e-6, "float64": 1e-12}


def _mpiexec():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")  # the mpich wheel's, in this environment
    return here if os.path.exists(here) else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="test_distributed.py needs mpi4py and mpiexec: install the 'distributed' extra: pip install \".[distributed]\"")


def train(tmp_path, name, case, dtype, ranks=None, *extra, timeout=300):
    """Runs the worker alone (ranks=None) or under mpiexec; returns (process, weights or None)."""
    out = tmp_path / f"{name}.npz"
    command = [sys.executable, WORKER, case, dtype, str(out), *extra]
    if ranks is not None:
        command = [MPIEXEC, "-n", str(ranks), *command, "--distributed"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    weights = None
    if out.exists():
        with np.load(out) as stored:
            weights = dict(stored)
    return done, weights


def worst_relative_error(a, b):
    return max(float(np.abs(a[k] - b[k]).max() / np.abs(a[k]).max()) for k in a)


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ["sequence to one", "sequence to sequence"])
def test_ranks_train_the_weights_of_one_process(tmp_path, case, dtype, ranks):
    # 50 (40) samples in global batches of 16 (12): uneven shards, and on 3 ranks a last batch
    # of 2 (4) samples that leaves a rank without any.
    alone, expected = train(tmp_path, "alone", case, dtype)
    assert alone.returncode == 0, alone.stderr
    together, weights = train(tmp_path, "together", case, dtype, ranks)
    assert together.returncode == 0, together.stderr
    assert_parity(f"distributed: {case.replace('sequence', 'seq')}, {ranks} ranks", dtype, weights, expected, tolerance=TOLERANCE[dtype])
    first, second = (json.loads(p.stdout.strip().splitlines()[-1])["history"] for p in (alone, together))
    assert [r["epoch"] for r in first] == [r["epoch"] for r in second]
    for a, b in zip(first, second):
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-5), (key, a, b)


def test_ranks_share_the_cpus_of_their_machine(tmp_path):
    together, _ = train(tmp_path, "together", "sequence to one", "float64", 2)
    assert together.returncode == 0, together.stderr
    info = json.loads(together.stdout.strip().splitlines()[-1])
    cpus = len(os.sched_getaffinity(0))
    assert info["threads"] == max(1, cpus // 2) and len(info["cpus"]) == max(1, cpus // 2), info


def test_a_dead_rank_ends_the_job_and_the_run_resumes_on_another_number_of_ranks(tmp_path):
    checkpoint = str(tmp_path / "run.ckpt")
    dead, _ = train(tmp_path, "dead", "sequence to one", "float64", 2, "--checkpoint", checkpoint,
                    "--die-after", "7", timeout=120)
    assert dead.returncode != 0
    assert os.path.exists(checkpoint)  # written by rank 0 at step 6
    resumed, weights = train(tmp_path, "resumed", "sequence to one", "float64", 3, "--checkpoint", checkpoint)
    assert resumed.returncode == 0, resumed.stderr
    _, expected = train(tmp_path, "alone", "sequence to one", "float64")
    assert worst_relative_error(expected, weights) <= TOLERANCE["float64"]


def test_a_rank_that_hangs_makes_the_others_fail_with_a_clear_error(tmp_path):
    hung, _ = train(tmp_path, "hung", "sequence to one", "float64", 2, "--hang-after", "3", "--timeout", "3",
                    timeout=120)
    assert hung.returncode != 0
    assert "DistributedError" in hung.stderr and "no answer from the other ranks for 3 s" in hung.stderr, \
        hung.stderr[-2000:]


def test_the_demo_runs_distributed_and_rank_0_alone_writes(tmp_path):
    # README, "Training on several machines": mpiexec -n 2 python -m lstm_ext demo --only forecasting --distributed
    out = tmp_path / "demo"
    done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "lstm_ext", "demo", "--only", "two-company",
                           "--quick", "--distributed", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("demos met their thresholds") == 1 and "on each of 2 MPI ranks" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] and list(summary["demos"]) == ["two-company"]


def test_the_text_demo_is_refused_distributed():
    done = subprocess.run([sys.executable, "-m", "lstm_ext", "demo", "--only", "text", "--distributed"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "truncated BPTT" in done.stderr


def test_truncated_bptt_is_refused_distributed():
    import lstm_ext

    model = lstm_ext.Sequential(lstm_ext.LSTM(2, 3, batch_first=True), lstm_ext.Linear(3, 1))
    model.compile("mse")
    X, y = np.zeros((4, 6, 2), np.float32), np.zeros((4, 6, 1), np.float32)
    with pytest.raises(ValueError, match="tbptt: truncated BPTT is not supported with distributed=True"):
        model.fit(X, y, tbptt=3, distributed=True, verbose=0)
