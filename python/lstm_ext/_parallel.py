"""How many threads the compiled core uses.

The core runs every call on a team from one pool of threads owned by the process (not OpenMP,
so it never competes with NumPy's or torch's own pools for the same threads). Results do not
depend on the number of threads: every output element is computed by the same instructions
whichever thread computes it.
"""

from __future__ import annotations

import numbers
import os
import re
import warnings
from typing import Optional

from . import _core

__all__ = ["get_num_threads", "set_num_threads", "OversubscriptionWarning"]

MAX_THREADS = 4096  # the core's limit


class OversubscriptionWarning(UserWarning):
    """More threads asked for than the CPUs this process may run on."""


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _check_threads(n: object, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name}: expected a number of threads in [1, {MAX_THREADS}], got {type(n).__name__} {n!r}")
    if not 1 <= int(n) <= MAX_THREADS:
        raise ValueError(f"{name}: expected a number of threads in [1, {MAX_THREADS}], got {n}")
    cpus = _available_cpus()
    if int(n) > cpus:
        warnings.warn(f"{name} = {n}: more threads than the {cpus} CPUs this process may run on. The core "
                      f"would run teams of up to {n} threads taking turns on {cpus} CPUs, each waiting for the "
                      "others at every step: calls get slower, not faster (results stay the same).",
                      OversubscriptionWarning, stacklevel=3)
    return int(n)


def set_num_threads(n: int) -> None:
    """Use up to ``n`` threads (1 <= n <= 4096) from the next call on.

    The default is the environment variable ``LSTM_EXT_NUM_THREADS`` when set (checked at import
    the same way), else the number of CPUs this process may run on. More threads than those CPUs
    are allowed, with an :class:`OversubscriptionWarning`: the threads take turns on the CPUs and
    calls get slower (the results do not change). Small problems use fewer threads than allowed,
    and a call made while another thread's call holds the pool runs on its own thread alone.
    """
    _core.set_num_threads(_check_threads(n, "n"))


def get_num_threads() -> int:
    """The number of threads the core may use (see :func:`set_num_threads`)."""
    return _core.get_num_threads()


def team_limit() -> int:
    """The largest team of threads a call gets now: 256 (no limit beyond :func:`get_num_threads`)
    while the machine lets the team work; fewer after calls whose threads kept waiting at the time
    steps' barriers for one that had lost its CPU to another program, until a later call finds the
    larger team worth it again, or :func:`set_num_threads` is called (README, "Threads";
    ``LSTM_EXT_ADAPT_TEAM=0`` turns this off). The results do not depend on it."""
    return _core.team_limit()


def _environment_value(name: str) -> Optional[str]:
    """The value of the environment variable `name` without surrounding whitespace, or None when
    it is unset, empty or whitespace only: an empty LSTM_EXT_* variable means the same as an
    unset one, here and in the core (cpu.hpp's environment_value reads them the same way)."""
    value = os.environ.get(name, "").strip()
    return value or None


def _check_environment() -> None:
    """The variables the core reads while it runs, checked at import: the core would ignore a bad
    value or take it for another, silently. Empty means unset (_environment_value).

    LSTM_EXT_NUM_THREADS: a number of threads in [1, 4096]. LSTM_EXT_PIN_THREADS: 0 (leave the
    workers to the scheduler) or 1 (pin them, the default). LSTM_EXT_ADAPT_TEAM: 0 (always the team
    asked for) or 1 (fewer members while they keep waiting for preempted ones, the default).
    (LSTM_EXT_KERNELS is checked by the core itself when it is imported.)
    """
    threads = _environment_value("LSTM_EXT_NUM_THREADS")
    if threads is not None:
        if not re.fullmatch(r"\+?[0-9]+", threads):
            raise ValueError(f"LSTM_EXT_NUM_THREADS: expected a number of threads in [1, {MAX_THREADS}], got "
                             f"{os.environ['LSTM_EXT_NUM_THREADS']!r}")
        _check_threads(int(threads), "LSTM_EXT_NUM_THREADS")
    pin = _environment_value("LSTM_EXT_PIN_THREADS")
    if pin is not None and pin not in ("0", "1"):
        raise ValueError(f"LSTM_EXT_PIN_THREADS: expected 0 (leave the worker threads to the scheduler) or 1 "
                         f"(pin each to its own CPU, the default), got {os.environ['LSTM_EXT_PIN_THREADS']!r}")
    adapt = _environment_value("LSTM_EXT_ADAPT_TEAM")
    if adapt is not None and adapt not in ("0", "1"):
        raise ValueError(f"LSTM_EXT_ADAPT_TEAM: expected 0 (always the team asked for) or 1 (fewer threads while "
                         f"they keep waiting for preempted ones, the default), got {os.environ['LSTM_EXT_ADAPT_TEAM']!r}")


_check_environment()
