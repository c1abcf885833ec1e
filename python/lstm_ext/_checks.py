"""Argument checks shared by the Python API.

Errors name the argument and give the expected and the actual shape or type: TypeError for the
wrong kind of value, ValueError for the wrong shape or an out-of-range value.
"""

from __future__ import annotations

import numbers
import os
from typing import Any, Optional, overload

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

_REAL_KINDS = "biuf"  # bool, signed and unsigned integers, floating point


def as_real_array(value: object, name: str, dtype: DTypeLike) -> np.ndarray:
    """Convert an array-like of real numbers to an array of `dtype` (no copy when it already is one).

    Complex, object and string data raise TypeError: converting them would silently drop or
    invent information.
    """
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name}: cannot be read as an array of real numbers ({error})") from error
    if array.dtype.kind not in _REAL_KINDS:
        source = "" if isinstance(value, np.ndarray) else f" (read from a {type(value).__name__})"
        raise TypeError(f"{name}: expected real numbers (float32, float64 or integers), "
                        f"got dtype {array.dtype}{source}")
    result: np.ndarray = array.astype(dtype, copy=False)
    return result


def check_shape(array: np.ndarray, name: str, expected: tuple[int, ...], legend: str = "") -> None:
    """ValueError unless `array` has exactly the `expected` shape; `legend` names its axes."""
    if array.shape != tuple(expected):
        named = f"{legend} = " if legend else ""
        raise ValueError(f"{name}: expected shape {named}{tuple(expected)}, got {array.shape}")


def check_positive_int(value: object, name: str) -> int:
    """The value as an int >= 1; TypeError for non-integers (bool included), ValueError for < 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value}")
    return int(value)


def physical_memory_bytes() -> int:
    """This machine's physical memory in bytes, the bound the core checks its calls against
    (bindings' require_memory); 10**18 where the system does not say."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows), or no such name
        return 10**18
    return pages * page_size if pages > 0 and page_size > 0 else 10**18


def check_memory(elements: int, itemsize: int, name: str, what: str) -> None:
    """MemoryError naming the argument `name` unless `elements` values of `itemsize` bytes (`what`
    they are for) fit in this machine's physical memory: checked before allocating them, as the
    core checks its own calls. Python integers: no product can overflow."""
    needed = elements * itemsize
    physical = physical_memory_bytes()
    if needed > physical:
        raise MemoryError(f"{name}: {what} needs {needed / 2**30:.3g} GiB, more than this machine's "
                          f"{physical / 2**30:.3g} GiB of memory")


def check_float_dtype(dtype: object) -> np.dtype[Any]:
    """float32 or float64 as a NumPy dtype; anything else is a TypeError."""
    try:
        resolved: np.dtype[Any] = np.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from error
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype: expected float32 or float64, got {resolved}")
    return resolved


@overload
def read_lengths(lengths: None, T: int, B: int) -> None: ...
@overload
def read_lengths(lengths: ArrayLike, T: int, B: int) -> NDArray[np.int64]: ...
def read_lengths(lengths: Optional[ArrayLike], T: int, B: int) -> Optional[NDArray[np.int64]]:
    """lengths (B,) integers in [1, T] -> an int64 array (a copy), or None."""
    if lengths is None:
        return None
    array = np.asarray(lengths)
    if array.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers (one valid length per sequence), got dtype {array.dtype}")
    check_shape(array, "lengths", (B,), "(B,)")
    bad = (array < 1) | (array > T)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(f"lengths: expected every length in [1, T] = [1, {T}], got {array[index]} "
                         f"at index {index}")
    return array.astype(np.int64)
