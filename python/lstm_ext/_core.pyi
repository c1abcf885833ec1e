"""lstm_ext's compiled core (C++/Eigen via pybind11). Shapes: T steps, B batch, I inputs, H hidden,
P projection (LSTM), G gate rows (4H LSTM, 3H GRU, H RNN), H_out = P with a projection, else H.

Each op computes in the dtype of w_ih (float32 for a float32 array, else float64) and converts
every other argument to it; C-contiguous arrays of that dtype are used without a copy. Bad
arguments raise TypeError / ValueError naming the argument; MemoryError before an allocation
that cannot fit. The GIL is released while computing, on a team of up to get_num_threads()
threads. `lengths` (B,) are valid lengths in [1, T] (None = all T); `reverse` walks from each
sequence's last valid step back to step 0. A backward takes its forward's lengths and reverse.

With `bidirectional=True` a call runs both directions of a layer (reverse must be False): every
weight and bias argument is a pair (forward, reverse), states and parameter gradients get a
leading axis of 2, y and dy are (T, B, 2 * H_out) (forward direction first), the workspace is
(2, size) and dx holds the sum of both directions' parts.
"""

from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike

def lstm_forward(
    x: ArrayLike,                          # (T, B, I)
    w_ih: ArrayLike,                       # (4H, I)
    w_hh: ArrayLike,                       # (4H, H_out)
    b_ih: Optional[ArrayLike] = None,      # (4H,)
    b_hh: Optional[ArrayLike] = None,      # (4H,)
    h0: Optional[ArrayLike] = None,        # (B, H_out), None = zeros
    c0: Optional[ArrayLike] = None,        # (B, H), None = zeros
    *,
    w_hr: Optional[ArrayLike] = None,      # (P, H): projection h_t = W_hr (o_t ⊙ tanh c_t)
    w_ch: Optional[ArrayLike] = None,      # (3, H): peephole weights, rows i, f, o
    keep_h: Optional[ArrayLike] = None,    # (B, H_out): recurrent dropout mask
    zone_c: Optional[ArrayLike | float] = None,  # (T, B, H) zoneout weights of c_{t-1}, or one number
    zone_h: Optional[ArrayLike | float] = None,  # (T, B, H_out) zoneout weights of h_{t-1}, or one number
    ln_ih_weight: Optional[ArrayLike] = None,  # (4H,) layer normalization: γ_ih, β_ih, γ_hh, β_hh (4H,),
    ln_ih_bias: Optional[ArrayLike] = None,    # γ_c, β_c (H,); all six or none
    ln_hh_weight: Optional[ArrayLike] = None,
    ln_hh_bias: Optional[ArrayLike] = None,
    ln_c_weight: Optional[ArrayLike] = None,
    ln_c_bias: Optional[ArrayLike] = None,
    lengths: Optional[ArrayLike] = None,   # (B,)
    reverse: bool = False,
    training: bool = False,
    bidirectional: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """-> (y (T, B, H_out), h_n (B, H_out), c_n (B, H), workspace (1-D) if training else None)"""

# An int8 matrix (N, K), N = blocks · rows: (panels (blocks, ceil(rows / 16), ceil(K / 4), 16, 4) int8,
# scale (N,) float32, sum (N,) int32), lstm_ext.quantized.pack_int8's Int8Weight.parts.
Int8Parts = tuple[np.ndarray, np.ndarray, np.ndarray]

def lstm_forward_int8(
    x: ArrayLike,                          # (T, B, I) float32
    w_ih: Int8Parts,                       # W_ih (4H, I) quantized by rows and packed
    w_hh: Int8Parts,                       # W_hh (4H, H_out)
    b_ih: Optional[ArrayLike] = None,      # (4H,)
    b_hh: Optional[ArrayLike] = None,      # (4H,)
    h0: Optional[ArrayLike] = None,        # (B, H_out), None = zeros
    c0: Optional[ArrayLike] = None,        # (B, H), None = zeros
    *,
    w_hr: Optional[Int8Parts] = None,      # W_hr (P, H): projection
    w_ch: Optional[ArrayLike] = None,      # (3, H): peephole weights (float32)
    zone_c: float = 0.0,                   # zoneout's expectation for c and h
    zone_h: float = 0.0,
    lengths: Optional[ArrayLike] = None,   # (B,)
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (y (T, B, H_out), h_n (B, H_out), c_n (B, H)), one direction, int8 products"""

def pack_bf16(w: np.ndarray, blocks: int = 1) -> np.ndarray:
    """bfloat16 bits (blocks * rows, K) uint16 -> packed for this level's products (blocks, panels, K, lanes)"""

def lstm_forward_bf16(
    x: ArrayLike,                          # (T, B, I) float32
    w_ih: ArrayLike,                       # (4H, I) float32 (its bfloat16 values)
    w_hh: np.ndarray,                      # W_hh's bfloat16 bits packed by pack_bf16 in 4 blocks
    b_ih: Optional[ArrayLike] = None,      # (4H,)
    b_hh: Optional[ArrayLike] = None,      # (4H,)
    h0: Optional[ArrayLike] = None,        # (B, H_out), None = zeros
    c0: Optional[ArrayLike] = None,        # (B, H), None = zeros
    *,
    proj_size: int = 0,
    w_hr: Optional[np.ndarray] = None,     # W_hr packed by pack_bf16 (1 block), with proj_size > 0
    w_ch: Optional[ArrayLike] = None,      # (3, H): peephole weights (float32)
    zone_c: float = 0.0,                   # zoneout's expectation for c and h
    zone_h: float = 0.0,
    lengths: Optional[ArrayLike] = None,   # (B,)
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (y (T, B, H_out), h_n (B, H_out), c_n (B, H)), one direction, bfloat16 recurrent weights"""

def gru_forward_int8(
    x: ArrayLike,                          # (T, B, I) float32
    w_ih: Int8Parts,                       # W_ih (3H, I) quantized by rows and packed
    w_hh: Int8Parts,                       # W_hh (3H, H)
    b_ih: Optional[ArrayLike] = None,      # (3H,)
    b_hh: Optional[ArrayLike] = None,      # (3H,)
    h0: Optional[ArrayLike] = None,        # (B, H), None = zeros
    *,
    lengths: Optional[ArrayLike] = None,   # (B,)
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """-> (y (T, B, H), h_n (B, H)), one direction, int8 products"""

def rnn_forward_int8(
    x: ArrayLike,                          # (T, B, I) float32
    w_ih: Int8Parts,                       # W_ih (H, I) quantized by rows and packed
    w_hh: Int8Parts,                       # W_hh (H, H)
    b_ih: Optional[ArrayLike] = None,      # (H,)
    b_hh: Optional[ArrayLike] = None,      # (H,)
    h0: Optional[ArrayLike] = None,        # (B, H), None = zeros
    *,
    nonlinearity: str = "tanh",
    lengths: Optional[ArrayLike] = None,   # (B,)
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """-> (y (T, B, H), h_n (B, H)), one direction, int8 products"""

def gru_forward_bf16(
    x: ArrayLike,                          # (T, B, I) float32
    w_ih: ArrayLike,                       # (3H, I) float32 (its bfloat16 values)
    w_hh: np.ndarray,                      # W_hh's bfloat16 bits packed by pack_bf16 in 3 blocks
    b_ih: Optional[ArrayLike] = None,      # (3H,)
    b_hh: Optional[ArrayLike] = None,      # (3H,)
    h0: Optional[ArrayLike] = None,        # (B, H), None = zeros
    *,
    lengths: Optional[ArrayLike] = None,   # (B,)
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """-> (y (T, B, H), h_n (B, H)), one direction, bfloat16 recurrent weights"""

def rnn_forward_bf16(
    x: ArrayLike,                          # (T, B, I) float32
    w_ih: ArrayLike,                       # (H, I) float32 (its bfloat16 values)
    w_hh: np.ndarray,                      # W_hh's bfloat16 bits packed by pack_bf16 (1 block)
    b_ih: Optional[ArrayLike] = None,      # (H,)
    b_hh: Optional[ArrayLike] = None,      # (H,)
    h0: Optional[ArrayLike] = None,        # (B, H), None = zeros
    *,
    nonlinearity: str = "tanh",
    lengths: Optional[ArrayLike] = None,   # (B,)
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """-> (y (T, B, H), h_n (B, H)), one direction, bfloat16 recurrent weights"""

def lstm_backward(
    dy: Optional[ArrayLike],               # (T, B, H_out), None = zeros
    dh_n: Optional[ArrayLike],             # (B, H_out), None = zeros
    dc_n: Optional[ArrayLike],             # (B, H), None = zeros
    x: ArrayLike,                          # (T, B, I), the forward's input
    w_ih: ArrayLike,                       # (4H, I)
    w_hh: ArrayLike,                       # (4H, H_out)
    workspace: ArrayLike,                  # from lstm_forward(..., training=True)
    *,
    w_hr: Optional[ArrayLike] = None,      # (P, H)
    w_ch: Optional[ArrayLike] = None,      # (3, H), the forward's
    keep_h: Optional[ArrayLike] = None,    # (B, H_out), the forward's
    zone_c: Optional[ArrayLike | float] = None,  # the forward's
    zone_h: Optional[ArrayLike | float] = None,  # the forward's
    ln_ih_weight: Optional[ArrayLike] = None,  # (4H,) layer normalization: γ_ih, β_ih, γ_hh, β_hh (4H,),
    ln_ih_bias: Optional[ArrayLike] = None,    # γ_c, β_c (H,); all six or none
    ln_hh_weight: Optional[ArrayLike] = None,
    ln_hh_bias: Optional[ArrayLike] = None,
    ln_c_weight: Optional[ArrayLike] = None,
    ln_c_bias: Optional[ArrayLike] = None,
    lengths: Optional[ArrayLike] = None,   # (B,)
    reverse: bool = False,
    bias: bool = True,
    bidirectional: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray],
           Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray],
           Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """-> (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr, dw_ch, dln_ih_weight, dln_ih_bias, dln_hh_weight,
    dln_hh_bias, dln_c_weight, dln_c_bias); db_* None without bias, dw_hr None without w_hr, dw_ch None without
    w_ch, dln_* None without layer normalization"""

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

class LstmStream32:
    """An LSTM stack's weights (copied) and state, kept between steps (lstm_ext.Stream); float32."""
    @property
    def batch_size(self) -> int: ...
    @property
    def input_size(self) -> int: ...
    @property
    def hidden_size(self) -> int: ...
    def __init__(
        self,
        layers: list[tuple[ArrayLike, ArrayLike, Optional[ArrayLike], Optional[ArrayLike]]],  # (w_ih, w_hh, b_ih, b_hh)
        batch_size: int,
    ) -> None: ...
    def step(self, x: ArrayLike) -> np.ndarray:  # x (B, I) -> h of the last layer (B, H)
        ...
    def state(self) -> tuple[np.ndarray, np.ndarray]:  # (h, c), each (num_layers, B, H)
        ...
    def set_state(self, h: Optional[ArrayLike], c: Optional[ArrayLike]) -> None: ...

class LstmStream64:
    """The same in float64: a class of its own (not a subclass of LstmStream32), with the same members."""
    @property
    def batch_size(self) -> int: ...
    @property
    def input_size(self) -> int: ...
    @property
    def hidden_size(self) -> int: ...
    def __init__(
        self,
        layers: list[tuple[ArrayLike, ArrayLike, Optional[ArrayLike], Optional[ArrayLike]]],  # (w_ih, w_hh, b_ih, b_hh)
        batch_size: int,
    ) -> None: ...
    def step(self, x: ArrayLike) -> np.ndarray:  # x (B, I) -> h of the last layer (B, H)
        ...
    def state(self) -> tuple[np.ndarray, np.ndarray]:  # (h, c), each (num_layers, B, H)
        ...
    def set_state(self, h: Optional[ArrayLike], c: Optional[ArrayLike]) -> None: ...

def gru_forward(
    x: ArrayLike,                          # (T, B, I)
    w_ih: ArrayLike,                       # (3H, I), gates r, z, n
    w_hh: ArrayLike,                       # (3H, H)
    b_ih: Optional[ArrayLike] = None,      # (3H,)
    b_hh: Optional[ArrayLike] = None,      # (3H,)
    h0: Optional[ArrayLike] = None,        # (B, H), None = zeros
    *,
    ln_ih_weight: Optional[ArrayLike] = None,  # (3H,) layer normalization: γ_ih, β_ih, γ_hh, β_hh; all or none
    ln_ih_bias: Optional[ArrayLike] = None,
    ln_hh_weight: Optional[ArrayLike] = None,
    ln_hh_bias: Optional[ArrayLike] = None,
    lengths: Optional[ArrayLike] = None,   # (B,)
    reverse: bool = False,
    training: bool = False,
    bidirectional: bool = False,
) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """-> (y (T, B, H), h_n (B, H), workspace (1-D) if training else None)"""

def gru_backward(
    dy: Optional[ArrayLike],               # (T, B, H), None = zeros
    dh_n: Optional[ArrayLike],             # (B, H), None = zeros
    x: ArrayLike,                          # (T, B, I), the forward's input
    w_ih: ArrayLike,                       # (3H, I)
    w_hh: ArrayLike,                       # (3H, H)
    workspace: ArrayLike,                  # from gru_forward(..., training=True)
    *,
    ln_ih_weight: Optional[ArrayLike] = None,  # (3H,) layer normalization: γ_ih, β_ih, γ_hh, β_hh; all or none
    ln_ih_bias: Optional[ArrayLike] = None,
    ln_hh_weight: Optional[ArrayLike] = None,
    ln_hh_bias: Optional[ArrayLike] = None,
    lengths: Optional[ArrayLike] = None,   # (B,)
    reverse: bool = False,
    bias: bool = True,
    bidirectional: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray],
           Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """-> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dln_ih_weight, dln_ih_bias, dln_hh_weight, dln_hh_bias); db_* None
    without bias, dln_* None without layer normalization"""

def rnn_forward(
    x: ArrayLike,                          # (T, B, I)
    w_ih: ArrayLike,                       # (H, I)
    w_hh: ArrayLike,                       # (H, H)
    b_ih: Optional[ArrayLike] = None,      # (H,)
    b_hh: Optional[ArrayLike] = None,      # (H,)
    h0: Optional[ArrayLike] = None,        # (B, H), None = zeros
    *,
    nonlinearity: str = "tanh",            # or "relu"
    lengths: Optional[ArrayLike] = None,   # (B,)
    reverse: bool = False,
    training: bool = False,
    bidirectional: bool = False,
) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """-> (y (T, B, H), h_n (B, H), workspace (1-D) if training else None)"""

def rnn_backward(
    dy: Optional[ArrayLike],               # (T, B, H), None = zeros
    dh_n: Optional[ArrayLike],             # (B, H), None = zeros
    x: ArrayLike,                          # (T, B, I), the forward's input
    w_ih: ArrayLike,                       # (H, I)
    w_hh: ArrayLike,                       # (H, H)
    workspace: ArrayLike,                  # from rnn_forward(..., training=True)
    *,
    nonlinearity: str = "tanh",
    lengths: Optional[ArrayLike] = None,   # (B,)
    reverse: bool = False,
    bias: bool = True,
    bidirectional: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """-> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh); db_* None without bias"""

def linear_forward(
    x: ArrayLike,                    # (N, I)
    w: ArrayLike,                    # (O, I)
    b: Optional[ArrayLike] = None,   # (O,)
) -> tuple[np.ndarray]:
    """-> (y (N, O),)"""

def linear_backward(
    dy: ArrayLike,                   # (N, O)
    x: ArrayLike,                    # (N, I)
    w: ArrayLike,                    # (O, I)
    *,
    bias: bool = True,
) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """-> (dx (N, I), dw (O, I), db (O,) or None without bias)"""

def exp(x: ArrayLike) -> np.ndarray: ...
def log(x: ArrayLike) -> np.ndarray: ...
def tanh(x: ArrayLike) -> np.ndarray: ...
def sigmoid(x: ArrayLike) -> np.ndarray: ...

def set_num_threads(n: int) -> None:
    """Use up to n >= 1 threads from the next call on."""

def get_num_threads() -> int:
    """Threads the core may use: set_num_threads, else LSTM_EXT_NUM_THREADS, else the CPUs this process may run on."""

def team_limit() -> int:
    """The largest team a call gets now: 256 (no limit), fewer while members keep waiting for preempted ones."""

def _set_member_delay_for_tests(rank: int, microseconds: int) -> None:
    """For tests: the member of this rank sleeps this long before every barrier (0: no more)."""

def scratch_cache_bytes() -> int:
    """Bytes of scratch memory kept from earlier calls for the next ones (at most 256 MiB)."""

def release_scratch_cache() -> None:
    """Frees the scratch memory kept from earlier calls."""

def read_bandwidth(bytes: int, threads: int, passes: int = 20, trials: int = 5) -> float:
    """Bytes per second at which `threads` threads read a working set of `bytes` bytes (for the roofline)."""

def _best_kernel_level(features: list[str]) -> Optional[str]:
    """The level the import would choose on a CPU with these features (tests)."""

def build_info() -> dict[str, Any]:
    """eigen_version, simd (instruction sets in use), arch_flags, native (bool), compiler"""
