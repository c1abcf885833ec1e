"""How many threads the compiled core uses.

The core runs every call on a team from one pool of threads owned by the process (not OpenMP,
so it never competes with NumPy's or torch's own pools for the same threads). Results do not
depend on the number of threads: every output element is computed by the same instructions
whichever thread computes it.
"""

from __future__ import annotations

from . import _core
from ._checks import check_positive_int

__all__ = ["get_num_threads", "set_num_threads"]


def set_num_threads(n: int) -> None:
    """Use up to ``n`` threads (n >= 1) from the next call on.

    The default is the environment variable ``LSTM_EXT_NUM_THREADS`` when set, else the number
    of CPUs this process may run on. Small problems use fewer threads than allowed, and a call
    made while another thread's call holds the pool runs on its own thread alone.
    """
    _core.set_num_threads(check_positive_int(n, "n"))


def get_num_threads() -> int:
    """The number of threads the core may use (see :func:`set_num_threads`)."""
    return _core.get_num_threads()
