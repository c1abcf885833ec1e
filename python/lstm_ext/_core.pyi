"""lstm_ext's compiled core (C++/Eigen via pybind11). Shapes: T steps, B batch, I inputs, H hidden.

Each op computes in the dtype of w_ih (float32 for a float32 array, else float64) and converts
every other argument to it; C-contiguous arrays of that dtype are used without a copy. Bad
arguments raise TypeError / ValueError naming the argument; MemoryError before an allocation
that cannot fit. The GIL is released while computing.
"""

from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike

def lstm_forward(
    x: ArrayLike,                      # (T, B, I)
    w_ih: ArrayLike,                   # (4H, I)
    w_hh: ArrayLike,                   # (4H, H)
    b_ih: Optional[ArrayLike] = None,  # (4H,)
    b_hh: Optional[ArrayLike] = None,  # (4H,)
    h0: Optional[ArrayLike] = None,    # (B, H), None = zeros
    c0: Optional[ArrayLike] = None,    # (B, H), None = zeros
    training: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """-> (y (T, B, H), h_n (B, H), c_n (B, H), workspace (1-D) if training else None)"""

def lstm_backward(
    dy: Optional[ArrayLike],    # (T, B, H), None = zeros
    dh_n: Optional[ArrayLike],  # (B, H), None = zeros
    dc_n: Optional[ArrayLike],  # (B, H), None = zeros
    x: ArrayLike,               # (T, B, I), the forward's input
    w_ih: ArrayLike,            # (4H, I)
    w_hh: ArrayLike,            # (4H, H)
    workspace: ArrayLike,       # from lstm_forward(..., training=True)
    bias: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """-> (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh); the bias gradients are None when bias is False"""

def lstm_cell(
    x: ArrayLike,                      # (B, I)
    h: Optional[ArrayLike],            # (B, H), None = zeros
    c: Optional[ArrayLike],            # (B, H), None = zeros
    w_ih: ArrayLike,                   # (4H, I)
    w_hh: ArrayLike,                   # (4H, H)
    b_ih: Optional[ArrayLike] = None,  # (4H,)
    b_hh: Optional[ArrayLike] = None,  # (4H,)
) -> tuple[np.ndarray, np.ndarray]:
    """-> (h' (B, H), c' (B, H))"""

def build_info() -> dict[str, Any]:
    """eigen_version, simd (instruction sets in use), arch_flags, native (bool), compiler"""
