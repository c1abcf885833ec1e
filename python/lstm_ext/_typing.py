"""Type aliases the Python API's annotations share (for mypy; nothing here runs differently)."""

from __future__ import annotations

import os
from typing import Any, Union

import numpy as np

__all__ = ["PathLike", "LayerState", "Header", "Arrays"]

# A file's path, as open() takes it.
PathLike = Union[str, "os.PathLike[str]"]

# A recurrent layer's state: h (L * D, B, H_out), or (h, c) for an LSTM.
LayerState = Union[np.ndarray, tuple[np.ndarray, ...]]

# A checkpoint's header (JSON) and its arrays by name.
Header = dict[str, Any]
Arrays = dict[str, np.ndarray]
