"""Data-parallel training over MPI (mpi4py): the same script on many processes and machines.

For example::

    mpiexec -n 4 python train.py          # train.py calls model.fit(..., distributed=True)

Every rank holds the whole model. Rank 0's initial weights (and optimizer state) are broadcast
to the others; each global batch (``batch_size`` samples, drawn from the same permutation of
(seed, epoch) on every rank) is cut into one contiguous shard per rank; each rank runs forward and
backward on its shard with the loss *summed*, and one allreduce per step adds every parameter's
gradient, the loss and the number of counted elements in one fused buffer. Dividing by that
number gives the gradient of the global batch's mean loss: the update, the optimizer state and
the weights are those of one process training on the global batch (equal to rounding; the tests
hold them to 1e-6 relative in float32, 1e-12 in float64), on every rank alike.

- The remainder: a global batch of n samples on p ranks gives rank r the samples
  [r·n // p, (r + 1)·n // p) of it, so shards differ by at most one sample; a rank whose shard is
  empty (n < p, the last batch of an epoch) contributes nothing and still takes the step.
- Threads: ranks on one machine split its CPUs (the CPUs this process may use, divided among the
  ranks of the machine, found with an MPI shared-memory split); each rank's thread team takes its
  share, so no two ranks pin workers to the same CPU. Where mpiexec already bound each rank to
  its own CPUs, that binding is kept.
- Checkpoints are written by rank 0 only (atomically, as always) and hold no rank count: a run
  resumes on any number of ranks (rank 0 reads the file and broadcasts what it holds). Progress
  bars and per-epoch lines are printed by rank 0 only; validation losses are reduced over ranks.
- Dropout masks are drawn per rank from the layer's generator advanced by a fixed jump per rank:
  different on every rank, reproducible for a given number of ranks, but not those of a single
  process (whose masks cover the whole batch), and not carried bit for bit across a resume.
- Truncated BPTT (tbptt=) is not supported with distributed=True (ValueError).
- Before anything else a distributed fit compares what every rank has (:meth:`Group.check_agreement`):
  the model (every layer's constructor arguments, dtype, parameter names and shapes, loss,
  optimizer and its hyper-parameters, gradient clipping), fit's arguments that decide the samples
  of each step and the number of collective calls (epochs, batch_size, shuffle, seed,
  early_stopping, validation) and the data (shapes and a digest of the values: every rank passes
  the same data); after rank 0's broadcast, a digest of the weights and the optimizer's state.
  Any difference is refused on every rank alike, with a ValueError naming the first one and the
  ranks, instead of ranks that silently average different models, hang at a step or end in an
  MPI error.
- A rank that stops answering (a crashed machine whose MPI does not end the job, a hang) makes
  the others raise :class:`DistributedError` after ``timeout`` seconds instead of waiting forever
  (MPICH's mpiexec ends every rank as soon as one dies).

mpi4py is imported only when a Group is made; any MPI that mpi4py is built against works (MPICH
from the ``distributed`` extra, Open MPI, Intel MPI, a vendor's).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Optional, Union

import numpy as np

from ._parallel import set_num_threads

__all__ = ["DistributedError", "Group"]

# What each rank describes of itself before a distributed run: (name, JSON-able value) pairs, in
# the order in which a difference is best reported.
Description = Sequence[tuple[str, Any]]


class DistributedError(RuntimeError):
    """The ranks of a distributed run lost each other (one stopped answering)."""


def _mpi() -> Any:  # the module mpi4py.MPI
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError("distributed=True needs mpi4py and an MPI: pip install \"lstm_ext[distributed]\" "
                          "(mpi4py and MPICH), or mpi4py built against your cluster's MPI") from error
    return MPI


class Group:
    """The ranks of one training run: an MPI communicator (COMM_WORLD by default) and what they
    share. ``timeout`` (seconds): how long a rank waits for the others at a step before it
    raises DistributedError."""

    def __init__(self, comm: Any = None, timeout: float = 600.0) -> None:  # comm: an mpi4py communicator
        MPI = _mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        machine = self.comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks on this machine
        self.local_rank: int = machine.Get_rank()
        self.local_size: int = machine.Get_size()
        self._machine_cpus: list[list[int]] = machine.allgather(sorted(os.sched_getaffinity(0)))
        machine.Free()
        self.timeout = float(timeout)
        self.seconds_communicating = 0.0  # time spent in allreduce (for the scaling figures)
        _abort_on_uncaught_exceptions(self.comm)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    # -- the machine's CPUs ---------------------------------------------------------------------

    def share_cpus(self) -> list[int]:
        """Give this rank its share of the machine's CPUs and a thread team of that size; returns
        the CPUs. Ranks that mpiexec bound to disjoint CPUs keep their binding."""
        mine = self._machine_cpus[self.local_rank]
        others = [set(cpus) for k, cpus in enumerate(self._machine_cpus) if k != self.local_rank]
        if any(set(mine) & cpus for cpus in others):  # shared: split them
            share = _split(mine, self.local_size)[self.local_rank]
            if len(share) > 0:
                os.sched_setaffinity(0, share)
                mine = share
            else:  # more ranks than CPUs: share one, unpinned
                mine = [mine[self.local_rank % len(mine)]]
                os.sched_setaffinity(0, mine)
        set_num_threads(len(mine))
        return list(mine)

    # -- data -----------------------------------------------------------------------------------

    def shard(self, index: np.ndarray) -> np.ndarray:
        """This rank's contiguous part of a global batch's sample indices (module docstring)."""
        n = len(index)
        return index[self.rank * n // self.size:(self.rank + 1) * n // self.size]

    # -- communication --------------------------------------------------------------------------

    def allreduce_sum(self, buffer: np.ndarray, what: str) -> None:
        """buffer ← the sum of every rank's buffer, in place; DistributedError when the others do
        not answer within the timeout."""
        start = time.perf_counter()
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        self._wait(request, what)
        self.seconds_communicating += time.perf_counter() - start

    def broadcast(self, value: Any, what: str) -> Any:
        """Rank 0's `value` on every rank: a Python object pickled in memory by rank 0 of the same
        job (pickle.loads here never reads a file)."""
        payload = pickle.dumps(value) if self.is_root else b""
        size = np.array([len(payload)], dtype=np.int64)
        self._wait(self.comm.Ibcast(size, root=0), what)
        data = np.frombuffer(payload, dtype=np.uint8).copy() if self.is_root else np.empty(int(size[0]), np.uint8)
        self._wait(self.comm.Ibcast(data, root=0), what)
        return value if self.is_root else pickle.loads(data.tobytes())

    def allgather_bytes(self, payload: bytes, what: str) -> list[bytes]:
        """Every rank's `payload`, in rank order, on every rank: first the sizes (one integer from
        each rank, which cannot mismatch), then the bytes into a buffer of their sum; so ranks
        whose payloads differ in size still meet. DistributedError when the others do not
        answer within the timeout."""
        sizes: np.ndarray = np.zeros(self.size, dtype=np.int64)
        self._wait(self.comm.Iallgather(np.array([len(payload)], dtype=np.int64), sizes), what)
        offsets = [0, *np.cumsum(sizes).tolist()]
        gathered = np.empty(offsets[-1], dtype=np.uint8)
        mine = np.frombuffer(payload, dtype=np.uint8)
        self._wait(self.comm.Iallgatherv(mine, [gathered, sizes.tolist(), offsets[:-1], self.MPI.BYTE]), what)
        return [gathered[offsets[k]:offsets[k + 1]].tobytes() for k in range(self.size)]

    def check_agreement(self, description: Description, subject: str) -> None:
        """Refuse unless every rank's `description` ((name, JSON-able value) pairs) is the same:
        the same ValueError on every rank, naming the first name whose values differ and which
        ranks have which value. The descriptions travel as canonical JSON (sorted keys) through
        allgather_bytes, so that the comparison itself cannot hang or fail in MPI on a mismatch."""
        payload = _canonical_json([[name, value] for name, value in description])
        every = self.allgather_bytes(payload, f"the comparison of the ranks at the start of the {subject}")
        if any(other != payload for other in every):
            raise ValueError(_first_difference([json.loads(other) for other in every], subject))

    def _wait(self, request: Any, what: str) -> None:  # request: an mpi4py.MPI.Request
        deadline = time.monotonic() + self.timeout
        pause = 0.0
        while True:
            if request.Test():
                return
            if time.monotonic() > deadline:
                raise DistributedError(f"rank {self.rank} of {self.size}: no answer from the other ranks for "
                                       f"{self.timeout:g} s at {what}; a rank has probably died or hangs. The "
                                       "last checkpoint (if any) resumes the run on any number of ranks")
            time.sleep(pause)
            pause = min(1e-3, pause + 1e-5)  # spin briefly, then poll every millisecond

    def abort(self, code: int = 1) -> None:
        """End every rank of the job (after an error on this one)."""
        self.comm.Abort(code)


_hooked = False


def _abort_on_uncaught_exceptions(comm: Any) -> None:
    """An exception no one catches on one rank (a DistributedError, a bad argument) ends the whole
    job after its traceback is printed, as ``python -m mpi4py`` does: otherwise the others would
    wait for that rank in their next collective call, or at MPI_Finalize, forever."""
    global _hooked
    if _hooked:
        return
    _hooked = True
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, traceback: Optional[TracebackType]) -> None:
        previous(kind, value, traceback)
        sys.stderr.flush()
        # MPICH's abort ends the job's processes, mpiexec's forwarding of their output included: a
        # moment first, so that the traceback reaches mpiexec's stderr (without it, one run in CI
        # ended with exit 1 and an empty stderr).
        time.sleep(0.5)
        comm.Abort(1)

    sys.excepthook = hook


def _canonical_json(value: Any) -> bytes:
    """`value` as JSON bytes, the same for equal values on every rank: sorted keys, no spaces,
    NumPy numbers and arrays as Python's, anything else JSON cannot hold as its repr."""
    def plain(item: Any) -> Any:
        if isinstance(item, (np.generic, np.ndarray)):
            return item.tolist()
        return repr(item)

    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=plain).encode()


def _first_difference(descriptions: list[list[list[Any]]], subject: str) -> str:
    """The message for ranks whose descriptions differ (each a list of [name, value], from
    JSON): the first name, in rank 0's order, whose values differ, and the ranks holding each
    value. Every rank computes it from the same gathered descriptions: the same text on all."""
    tables = [{name: value for name, value in description} for description in descriptions]
    names = list(dict.fromkeys(name for table in tables for name in table))  # rank 0's order, then others'
    for name in names:
        texts = [json.dumps(table[name], sort_keys=True) if name in table else "nothing" for table in tables]
        if len(set(texts)) == 1:
            continue
        holders: dict[str, list[int]] = {}  # each value shown, the ranks that have it
        for rank, text in enumerate(texts):
            holders.setdefault(text, []).append(rank)
        parts = [f"{_ranks(ranks)} {'has' if len(ranks) == 1 else 'have'} {_shortened(text)}"
                 for text, ranks in holders.items()]
        return (f"{subject}: the ranks disagree on {name}: {', '.join(parts)} (every rank must build the same "
                f"model and call fit with the same data and arguments)")
    return f"{subject}: the ranks' descriptions differ"  # (not reached: equal values give equal JSON)


def _ranks(ranks: list[int]) -> str:
    """'rank 1', 'ranks 0, 2, 3'."""
    return f"rank {ranks[0]}" if len(ranks) == 1 else "ranks " + ", ".join(str(rank) for rank in ranks)


def _shortened(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def array_digest(arrays: Sequence[Optional[np.ndarray]]) -> str:
    """A digest of the arrays' shapes and values (SHA-256, its first 64 bits in hex: enough to
    tell data that differ by mistake), the same on two ranks holding equal data whatever its
    memory layout: integers as int64, native byte order, read a block of rows at a time (at most
    16 MiB copied at once)."""
    hashed = hashlib.sha256()
    for array in arrays:
        if array is None:
            hashed.update(b"None;")
            continue
        hashed.update(f"{array.shape};".encode())
        dtype = np.dtype(np.int64) if array.dtype.kind in "biu" else array.dtype.newbyteorder("=")
        if array.ndim == 0:
            hashed.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
            continue
        row_bytes = max(1, dtype.itemsize * int(np.prod(array.shape[1:])))
        rows = max(1, (16 << 20) // row_bytes)
        for start in range(0, len(array), rows):
            hashed.update(np.ascontiguousarray(array[start:start + rows], dtype=dtype).data)
    return hashed.hexdigest()[:16]


def _split(cpus: list[int], parts: int) -> list[list[int]]:
    """`cpus` cut into `parts` contiguous shares, sizes differing by at most one."""
    return [cpus[k * len(cpus) // parts:(k + 1) * len(cpus) // parts] for k in range(parts)]


def make_group(distributed: Union[bool, Group, None]) -> Optional[Group]:
    """fit's `distributed` argument -> a Group (True: COMM_WORLD) or None (False / None)."""
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        return Group()
    if isinstance(distributed, Group):
        return distributed
    raise TypeError(f"distributed: expected True, False or an lstm_ext.distributed.Group, got "
                    f"{type(distributed).__name__}")
