"""Recurrent layers with PyTorch's names, shapes and semantics, over the compiled core.

A layer owns its parameters (NumPy arrays, also reachable as attributes such as
``layer.weight_hh_l0``) and their gradients (``layer.grads``, same keys). ``forward`` in training
mode keeps what ``backward`` needs; ``backward`` accumulates parameter gradients into ``grads``
and returns the gradients of the forward's inputs.
"""

from __future__ import annotations

import math

import numpy as np

from . import functional as F
from ._checks import as_real_array, check_float_dtype, check_positive_int, check_shape

__all__ = ["Module", "LSTM"]


class Module:
    """What every layer shares: parameters and gradients by name, train/eval, state dicts."""

    def __init__(self, dtype=np.float32):
        self.dtype = check_float_dtype(dtype)
        self.training = True
        self._parameters: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def _add_parameter(self, name: str, value: np.ndarray) -> None:
        value = np.ascontiguousarray(value, dtype=self.dtype)
        self._parameters[name] = value
        self.grads[name] = np.zeros_like(value)
        setattr(self, name, value)

    def named_parameters(self) -> dict[str, np.ndarray]:
        """The parameters themselves (not copies), by state-dict name."""
        return dict(self._parameters)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def train(self, mode: bool = True):
        """Training mode (forward keeps a workspace for backward); returns self."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Inference mode (forward keeps nothing); returns self."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set every accumulated parameter gradient to zero."""
        for grad in self.grads.values():
            grad.fill(0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters under PyTorch's names."""
        return {name: value.copy() for name, value in self._parameters.items()}

    def load_state_dict(self, state_dict) -> None:
        """Load parameters from a dict of arrays (e.g. a torch state dict converted to NumPy).

        Keys must match exactly (KeyError naming the missing or unexpected ones) and every array
        must have its parameter's shape (ValueError). Nothing is changed unless all of it is valid.
        """
        missing = [name for name in self._parameters if name not in state_dict]
        unexpected = [name for name in state_dict if name not in self._parameters]
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}; "
                           f"expected exactly {list(self._parameters)}")
        loaded = {}
        for name, current in self._parameters.items():
            value = as_real_array(state_dict[name], name, self.dtype)
            check_shape(value, name, current.shape)
            loaded[name] = value
        for name, value in loaded.items():
            self._parameters[name][...] = value


class LSTM(Module):
    """A one-layer, one-direction LSTM, a drop-in for ``torch.nn.LSTM(input_size, hidden_size)``.

    Input x is (T, B, input_size), or (B, T, input_size) with ``batch_first``; the output y is
    (T, B, hidden_size) (or batch-first), and the state (h, c) is a pair of (1, B, hidden_size)
    arrays. Parameters ``weight_ih_l0`` (4H, I), ``weight_hh_l0`` (4H, H), ``bias_ih_l0`` and
    ``bias_hh_l0`` (4H,) hold the gates in PyTorch's order i, f, g, o, initialised from
    U(−1/√H, 1/√H) with a NumPy generator seeded by ``seed``.

    Any array-like of real numbers is accepted as input and converted to the layer's dtype;
    complex, object and string input raise TypeError.
    """

    def __init__(self, input_size, hidden_size, bias=True, batch_first=False, dtype=np.float32, seed=None):
        super().__init__(dtype)
        self.input_size = check_positive_int(input_size, "input_size")
        self.hidden_size = check_positive_int(hidden_size, "hidden_size")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.seed = seed
        self._saved = None  # what backward needs, from the last training-mode forward

        H, I = self.hidden_size, self.input_size
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(H)
        shapes = {"weight_ih_l0": (4 * H, I), "weight_hh_l0": (4 * H, H)}
        if self.bias:
            shapes.update({"bias_ih_l0": (4 * H,), "bias_hh_l0": (4 * H,)})
        for name, shape in shapes.items():
            # Drawn in float64 so that layers of either dtype with the same seed match.
            self._add_parameter(name, rng.uniform(-bound, bound, size=shape))

    def __repr__(self):
        args = [str(self.input_size), str(self.hidden_size)]
        if not self.bias:
            args.append("bias=False")
        if self.batch_first:
            args.append("batch_first=True")
        args.append(f"dtype={self.dtype.name}")
        return f"LSTM({', '.join(args)})"

    # -- shapes at the Python edge ----------------------------------------------------------------

    def _time_major(self, array: np.ndarray) -> np.ndarray:
        """(B, T, ·) -> (T, B, ·) with batch_first; a view, no copy."""
        return array.swapaxes(0, 1) if self.batch_first else array

    def _read_pair(self, pair, name: str, B: int, allow_none: bool):
        """(h, c) of shape (1, B, H) each -> two (B, H) arrays (None stays None where allowed)."""
        expected = (1, B, self.hidden_size)
        if pair is None:
            return None, None
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            got = f"{type(pair).__name__} of length {len(pair)}" if isinstance(pair, (tuple, list)) else type(pair).__name__
            raise TypeError(f"{name}: expected a tuple (h, c) of two arrays of shape "
                            f"(num_layers * num_directions, B, H) = {expected}, or None; got {got}")
        out = []
        for k, (part, value) in enumerate(zip("hc", pair)):
            label = f"{name}[{k}] ({part})"
            if value is None and allow_none:
                out.append(None)
                continue
            array = as_real_array(value, label, self.dtype)
            check_shape(array, label, expected, "(num_layers * num_directions, B, H)")
            out.append(array[0])
        return tuple(out)

    # -- forward and backward ---------------------------------------------------------------------

    def forward(self, x, state=None):
        """Run the layer over a sequence: returns (y, (h_n, c_n)).

        ``state`` is (h0, c0), each (1, B, H), or None for zeros.
        """
        x_array = as_real_array(x, "x", self.dtype)
        legend = "(B, T, I)" if self.batch_first else "(T, B, I)"
        if x_array.ndim != 3:
            raise ValueError(f"x: expected a 3-D array {legend} with I = {self.input_size}, got shape {x_array.shape}")
        x_tm = self._time_major(x_array)
        T, B, I = x_tm.shape
        if T < 1 or B < 1 or I != self.input_size:
            raise ValueError(f"x: expected shape {legend} with T >= 1, B >= 1 and I = {self.input_size}, "
                             f"got {x_array.shape}")
        h0, c0 = self._read_pair(state, "state", B, allow_none=False)

        w = self._parameters
        b_ih, b_hh = (w["bias_ih_l0"], w["bias_hh_l0"]) if self.bias else (None, None)
        self._saved = None  # a new forward replaces whatever the last one kept
        x_tm = np.ascontiguousarray(x_tm)
        if self.training and np.may_share_memory(x_tm, x):
            x_tm = x_tm.copy()  # backward must see the input as it was, whatever the caller does to it
        out = F.lstm_forward(x_tm, w["weight_ih_l0"], w["weight_hh_l0"], b_ih, b_hh, h0, c0,
                             training=self.training)
        if self.training:
            # The weights as they were: an update between forward and backward must not leak in.
            self._saved = (x_tm, out.workspace, w["weight_ih_l0"].copy(), w["weight_hh_l0"].copy())
        return self._time_major(out.y), (out.h_n[None], out.c_n[None])

    def backward(self, dy, dstate=None):
        """Backpropagate through the most recent training-mode forward.

        ``dy`` is the gradient w.r.t. y (same shape as y) or None when only the final state
        matters; ``dstate`` is (dh_n, dc_n), each (1, B, H) or None, or None altogether.
        Parameter gradients are added to ``grads``; returns (dx, (dh0, dc0)).
        The forward's workspace is released: a second backward needs a new forward.
        """
        if self._saved is None:
            raise RuntimeError("backward: no training-mode forward to backpropagate through (call forward() "
                               "in training mode first; each forward supports one backward)")
        x_tm, workspace, w_ih, w_hh = self._saved
        T, B, _ = x_tm.shape
        if dy is not None:
            dy_array = as_real_array(dy, "dy", self.dtype)
            y_shape = (B, T, self.hidden_size) if self.batch_first else (T, B, self.hidden_size)
            check_shape(dy_array, "dy", y_shape, "of y " + ("(B, T, H)" if self.batch_first else "(T, B, H)"))
            dy = self._time_major(dy_array)
        dh_n, dc_n = self._read_pair(dstate, "dstate", B, allow_none=True)

        grads = F.lstm_backward(dy, dh_n, dc_n, x_tm, w_ih, w_hh, workspace, bias=self.bias)
        self._saved = None
        self.grads["weight_ih_l0"] += grads.dw_ih
        self.grads["weight_hh_l0"] += grads.dw_hh
        if self.bias:
            self.grads["bias_ih_l0"] += grads.db_ih
            self.grads["bias_hh_l0"] += grads.db_hh
        return self._time_major(grads.dx), (grads.dh0[None], grads.dc0[None])
