"""Data-parallel training over MPI (lstm_ext.distributed): under mpiexec with 2 and 3 ranks the
weights equal those of one process on the same global batches; a rank that dies ends the job
and the run resumes from its checkpoint on another number of ranks; a rank that hangs makes the
others fail with a clear error within the timeout; ranks that differ in their model, fit's
arguments or data are refused at once, on every rank. Needs mpi4py and an mpiexec (the
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


# distributed_worker.py --disagree: rank 1's difference -> what the refusal names (after "the ranks
# disagree on "), on both ranks.
DISAGREEMENTS = {
    "zoneout": "layers[0].zoneout: rank 0 has [0.0, 0.0], rank 1 has [0.5, 0.5]",
    "recurrent_dropout": "layers[0].recurrent_dropout: rank 0 has 0.0, rank 1 has 0.3",
    "hidden_size": "layers[0].hidden_size: rank 0 has 16, rank 1 has 8",
    "dtype": 'dtype: rank 0 has "float32", rank 1 has "float64"',
    "seed": "seed: rank 0 has 0, rank 1 has 1",
    "batch_size": "batch_size: rank 0 has 16, rank 1 has 15",
    "epochs": "epochs: rank 0 has 3, rank 1 has 4",
    "samples": "len(X): rank 0 has 50, rank 1 has 49",
    "values": "the values of X (digest): rank 0 has ",
    "weights after the broadcast": "the weights after rank 0's broadcast (digest): rank 0 has ",
}


def test_ranks_that_disagree_are_refused_at_once_on_every_rank(tmp_path):
    # Issue 27: ranks that differed trained to the end, averaging different models, or hung until
    # the allreduce timeout, or ended in an MPICH internal error (float64 against float32, in the
    # issue). Before the check, these cases: 'hidden_size' (refused on rank 1 alone) and 'epochs'
    # hung until the timeout; every other one trained to the end. One mpiexec run: one fit per
    # difference in turn, each refused on both ranks with the same message.
    done, _ = train(tmp_path, "disagree", "sequence to one", "float32", 2, "--disagree", ",".join(DISAGREEMENTS),
                    "--timeout", "20", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads((tmp_path / f"disagree.npz.rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["disagree"] for r in results[0]] == [r["disagree"] for r in results[1]] == list(DISAGREEMENTS)
    for expected, on_0, on_1 in zip(DISAGREEMENTS.values(), *results):
        assert on_0["refused"] == on_1["refused"], (on_0, on_1)
        for result in (on_0, on_1):
            assert (result["refused"] or "").startswith(f"distributed fit: the ranks disagree on {expected}"), result
            assert result["seconds"] < 10, result  # at once, not after the timeout (20 s here, 600 s by default)


ONE_RANK_REFUSED = """
import numpy as np
from mpi4py import MPI
import lstm_ext

rank = MPI.COMM_WORLD.Get_rank()
X = np.zeros((8, 5, 2), np.float32)
y = np.zeros((8, 1 if rank == 0 else 2), np.float32)  # rank 1's targets have the wrong shape
model = lstm_ext.Sequential(lstm_ext.LSTM(2, 3, batch_first=True, seed=0), lstm_ext.LastStep(),
                            lstm_ext.Linear(3, 1, seed=0))
model.compile("mse")
model.fit(X, y, distributed=True, verbose=0)
"""


def test_arguments_refused_on_one_rank_end_the_job_at_once():
    # With distributed=True, fit refused rank 1's arguments before it made its Group (and with it
    # the hook that aborts the job on an uncaught exception): rank 0 then waited in MPI forever.
    job = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-c", ONE_RANK_REFUSED], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        _, errors = job.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        job.terminate()  # (on SIGTERM mpiexec ends its ranks)
        job.communicate()
        pytest.fail("a rank whose arguments fit refused left the other waiting")
    assert job.returncode != 0
    assert "ValueError: y: expected shape (8, 1) (the model's output shape), got (8, 2)" in errors, errors[-2000:]


def test_the_refusal_names_the_first_difference_and_groups_the_ranks():
    from lstm_ext.distributed import _first_difference

    mine = [["dtype", "float32"], ["layers[0].zoneout", [0.0, 0.0]], ["seed", 0], ["epochs", 3]]
    other = [["dtype", "float32"], ["layers[0].zoneout", [0.0, 0.0]], ["seed", 0], ["epochs", 4]]
    assert _first_difference([mine, other, mine], "distributed fit").startswith(
        "distributed fit: the ranks disagree on epochs: ranks 0, 2 have 3, rank 1 has 4 (")
    assert _first_difference([mine, mine[:2] + other[3:], other], "distributed fit").startswith(
        "distributed fit: the ranks disagree on seed: ranks 0, 2 have 0, rank 1 has nothing (")


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
