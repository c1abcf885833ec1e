"""The commands' numbers, checked before any work, so that a bad one fails at once in one line
(exit code 2), not with a crash of the core or a traceback after minutes of training or timing
(as paths.py does for the places the commands write).

Each function returns None when the value is fine, else what is wrong with it, for
``parser.error(f"--name {problem}")``: e.g. ``--threads must be >= 1 and <= 4096 (...), got 100000``.
"""

from __future__ import annotations

import math
from typing import Optional

from lstm_ext._checks import physical_memory_bytes
from lstm_ext._parallel import MAX_THREADS

__all__ = ["MAX_SEED", "MAX_REPEATS", "integer_problem", "seed_problem", "threads_problem", "milliseconds_problem",
           "memory_problem"]

MAX_SEED = 2**32 - 1  # seeds are non-negative (NumPy refuses -1); this range is every common tool's
MAX_REPEATS = 1000    # timing repeats: the median of more says nothing new, and the run would take hours


def integer_problem(value: int, low: int, high: Optional[int] = None) -> Optional[str]:
    """None when low <= value (<= high, when given); else the range and the value."""
    if value >= low and (high is None or value <= high):
        return None
    expected = f">= {low}" if high is None else f">= {low} and <= {high}"
    return f"must be {expected}, got {value}"


def seed_problem(value: int) -> Optional[str]:
    """None for a seed in [0, 2**32 - 1]."""
    return integer_problem(value, 0, MAX_SEED)


def threads_problem(value: int) -> Optional[str]:
    """None for a number of threads lstm_ext.set_num_threads takes: [1, 4096], the core's limit
    (more threads than CPUs are allowed: set_num_threads warns)."""
    problem = integer_problem(value, 1, MAX_THREADS)
    return None if problem is None else problem.replace(", got", " (the range of lstm_ext.set_num_threads), got")


def milliseconds_problem(value: float, high: float) -> Optional[str]:
    """None for a finite number of milliseconds in [0, high] (not nan, not inf)."""
    if math.isfinite(value) and 0 <= value <= high:
        return None
    return f"must be a number of milliseconds >= 0 and <= {high:g}, got {value:g}"


def memory_problem(needed_bytes: float, what: str) -> Optional[str]:
    """None when `needed_bytes` fit in this machine's memory (the library's bound,
    lstm_ext._checks.physical_memory_bytes); else both, in GiB: `what` would hold about N GiB, more
    than this machine's M GiB."""
    memory = physical_memory_bytes()
    if needed_bytes <= memory:
        return None
    return (f"{what} would hold about {needed_bytes / 2**30:.1f} GiB, more than this machine's "
            f"{memory / 2**30:.1f} GiB of memory")
