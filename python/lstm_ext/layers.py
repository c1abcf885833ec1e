"""Recurrent layers with PyTorch's names, shapes and semantics, over the compiled core.

``LSTM``, ``GRU`` and ``RNN`` take torch.nn's arguments (stacked layers, bidirectional, LSTM
projection, dropout between layers, batch_first) and their forward takes per-sequence
``lengths`` in place of torch's packed sequences. A layer owns its parameters (NumPy arrays,
also reachable as attributes such as ``layer.weight_hh_l0``) and their gradients
(``layer.grads``, same keys). ``forward`` in training mode keeps what ``backward`` needs;
``backward`` accumulates parameter gradients into ``grads`` and returns the gradients of the
forward's inputs.

The compiled core runs one layer per call, both directions of a bidirectional layer in the same
call (lengths and direction handled inside its time loops, the directions side by side in its
output); this module stacks layers and applies dropout.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from . import functional as F
from ._checks import as_real_array, check_float_dtype, check_positive_int, check_shape, read_lengths

__all__ = ["Module", "RNNBase", "LSTM", "GRU", "RNN"]


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

    @classmethod
    def parameter_shapes(cls, config: dict) -> dict[str, tuple]:
        """{name: shape} of the parameters of a module built from ``config`` (config()), computed
        without building it: what a checkpoint is checked against before anything is allocated."""
        return {}

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def train(self, mode: bool = True):
        """Training mode (forward keeps a workspace for backward; dropout is active); returns self."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Inference mode (forward keeps nothing; no dropout); returns self."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set every accumulated parameter gradient to zero."""
        for grad in self.grads.values():
            grad.fill(0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters under PyTorch's names."""
        return {name: value.copy() for name, value in self._parameters.items()}

    def load_state_dict(self, state_dict) -> None:
        """Load parameters from a dict of arrays (e.g. a torch state dict, tensors or NumPy).

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


def _check_dropout(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"dropout: expected a probability in [0, 1), got {type(value).__name__} {value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1), got {value}")
    return float(value)


def _check_proj_size(proj_size, hidden_size: int) -> int:
    if isinstance(proj_size, bool) or not isinstance(proj_size, numbers.Integral):
        raise TypeError(f"proj_size: expected an integer in [0, hidden_size), got {type(proj_size).__name__} "
                        f"{proj_size!r}")
    if not 0 <= proj_size < hidden_size:
        raise ValueError(f"proj_size: expected an integer in [0, hidden_size) = [0, {hidden_size}), got {proj_size}")
    return int(proj_size)


class RNNBase(Module):
    """Stacked, optionally bidirectional recurrent layers of one kind (``mode``)."""

    mode = ""    # "LSTM", "GRU" or "RNN"
    gates = 1    # gate blocks in the weights: 4, 3 or 1

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, nonlinearity="tanh", dtype=np.float32, seed=None):
        super().__init__(dtype)
        self.input_size = check_positive_int(input_size, "input_size")
        self.hidden_size = check_positive_int(hidden_size, "hidden_size")
        self.num_layers = check_positive_int(num_layers, "num_layers")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = _check_dropout(dropout)
        self.bidirectional = bool(bidirectional)
        self.proj_size = _check_proj_size(proj_size, self.hidden_size)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.seed = seed
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(f"dropout={self.dropout} applies between stacked layers: with num_layers=1 it has no "
                          "effect", UserWarning, stacklevel=3)
        self._saved = None  # what backward needs, from the last training-mode forward
        self._forward_copies: dict[str, np.ndarray] = {}  # the weights as at that forward (_weights_at_forward)

        # PyTorch's parameters, in its order, from U(−1/√H, 1/√H); drawn in float64 so that layers
        # of either dtype with the same seed match. Dropout masks come from a stream of their own.
        init = np.random.default_rng(seed)
        self._dropout_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, shape in self.parameter_shapes(self.config()).items():
            self._add_parameter(name, init.uniform(-bound, bound, size=shape))

    @classmethod
    def parameter_shapes(cls, config: dict) -> dict[str, tuple]:
        """{name: shape} of the parameters of a layer built from ``config`` (the constructor's
        arguments, as config() gives them), in torch's order, computed without building it."""
        H = check_positive_int(config["hidden_size"], "hidden_size")
        I = check_positive_int(config["input_size"], "input_size")
        num_layers = check_positive_int(config.get("num_layers", 1), "num_layers")
        P = _check_proj_size(config.get("proj_size", 0), H)
        D = 2 if config.get("bidirectional", False) else 1
        G, H_out = cls.gates * H, P or H
        shapes = {}
        for k in range(num_layers):
            layer_input = I if k == 0 else D * H_out
            for suffix in [f"_l{k}", f"_l{k}_reverse"][:D]:
                shapes.update({f"weight_ih{suffix}": (G, layer_input), f"weight_hh{suffix}": (G, H_out)})
                if config.get("bias", True):
                    shapes.update({f"bias_ih{suffix}": (G,), f"bias_hh{suffix}": (G,)})
                if P:
                    shapes[f"weight_hr{suffix}"] = (P, H)
        return shapes

    def config(self) -> dict:
        """The constructor's arguments (JSON-able): enough to build the same layer again."""
        config = dict(input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                      bias=self.bias, batch_first=self.batch_first, dropout=self.dropout,
                      bidirectional=self.bidirectional, dtype=self.dtype.name,
                      seed=self.seed if isinstance(self.seed, int) else None)
        if self.mode == "LSTM":
            config["proj_size"] = self.proj_size
        if self.mode == "RNN":
            config["nonlinearity"] = self.nonlinearity
        return config

    def rng_state(self) -> dict:
        """The state of the generator the dropout masks come from (JSON-able)."""
        return self._dropout_rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        """Continue the dropout masks from a state given by rng_state()."""
        self._dropout_rng.bit_generator.state = state

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Size of h and of each direction's output: proj_size when projecting, else hidden_size."""
        return self.proj_size or self.hidden_size

    def to_torch(self):
        """The equal torch.nn.LSTM / GRU / RNN module (needs torch; see lstm_ext.interop)."""
        from .interop import to_torch

        return to_torch(self)

    def _suffixes(self, k):
        return [f"_l{k}", f"_l{k}_reverse"][: self.num_directions]

    def __repr__(self):
        args = [str(self.input_size), str(self.hidden_size)]
        defaults = dict(num_layers=1, bias=True, batch_first=False, dropout=0.0, bidirectional=False, proj_size=0,
                        nonlinearity="tanh")
        for name, default in defaults.items():
            if hasattr(self, name) and getattr(self, name) != default:
                args.append(f"{name}={getattr(self, name)!r}")
        args.append(f"dtype={self.dtype.name}")
        return f"{type(self).__name__}({', '.join(args)})"

    # -- shapes at the Python edge ----------------------------------------------------------------

    def _time_major(self, array: np.ndarray) -> np.ndarray:
        """(B, T, ·) -> (T, B, ·) with batch_first; a view, no copy."""
        return array.swapaxes(0, 1) if self.batch_first else array

    def _state_shapes(self, B):
        """[(part name, shape)] of the state: (h,) or (h, c), each (num_layers * D, B, ·)."""
        rows = self.num_layers * self.num_directions
        shapes = [("h", (rows, B, self.output_size))]
        if self.mode == "LSTM":
            shapes.append(("c", (rows, B, self.hidden_size)))
        return shapes

    def _state_legend(self, part):
        size = "proj_size" if part == "h" and self.proj_size else "H"
        return f"(num_layers * num_directions, B, {size})"

    def _read_state(self, state, name: str, B: int, allow_none: bool):
        """The state argument -> a list of arrays (or None) in the layer's dtype, one per part."""
        shapes = self._state_shapes(B)
        if state is None:
            return [None] * len(shapes)
        if self.mode == "LSTM":
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                got = (f"{type(state).__name__} of length {len(state)}" if isinstance(state, (tuple, list))
                       else type(state).__name__)
                (_, h_shape), (_, c_shape) = shapes
                raise TypeError(f"{name}: expected a tuple (h, c) of two arrays, h of shape {self._state_legend('h')} "
                                f"= {h_shape} and c of shape {self._state_legend('c')} = {c_shape}, or None; got {got}")
            parts = [(f"{name}[{k}] ({part})", part, shape, value)
                     for k, ((part, shape), value) in enumerate(zip(shapes, state))]
        else:
            if isinstance(state, (tuple, list)):
                raise TypeError(f"{name}: expected one array h of shape (num_layers * num_directions, B, H) = "
                                f"{shapes[0][1]}, or None; got {type(state).__name__} ({self.mode} has no cell "
                                "state)")
            parts = [(name, "h", shapes[0][1], state)]
        out = []
        for label, part, shape, value in parts:
            if value is None and allow_none:
                out.append(None)
                continue
            array = as_real_array(value, label, self.dtype)
            check_shape(array, label, shape, self._state_legend(part))
            out.append(np.ascontiguousarray(array))
        return out

    def _pack_state(self, parts):
        return tuple(parts) if self.mode == "LSTM" else parts[0]

    # -- one layer (both its directions), over the compiled core -----------------------------------

    def _layer_parameters(self, k, name, source=None):
        """Parameter ``name`` of layer k: its array for one direction, the pair (forward, reverse)
        for two (the core's bidirectional call); None when the layer has no such parameter."""
        source = self._parameters if source is None else source
        values = [source.get(name + suffix) for suffix in self._suffixes(k)]
        if values[0] is None:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def _forward_layer(self, x, k, h0, c0, lengths):
        """-> (y (T, B, D * H_out), h_n, c_n or None, workspace or None) of layer k, both directions
        in one core call; states (B, ·) for one direction, (2, B, ·) for two."""
        weight = lambda name: self._layer_parameters(k, name)  # noqa: E731
        common = dict(lengths=lengths, training=self.training, bidirectional=self.bidirectional)
        if self.mode == "LSTM":
            return tuple(F.lstm_forward(x, weight("weight_ih"), weight("weight_hh"), weight("bias_ih"),
                                        weight("bias_hh"), h0, c0, w_hr=weight("weight_hr"), **common))
        if self.mode == "GRU":
            y, h_n, ws = F.gru_forward(x, weight("weight_ih"), weight("weight_hh"), weight("bias_ih"),
                                       weight("bias_hh"), h0, **common)
        else:
            y, h_n, ws = F.rnn_forward(x, weight("weight_ih"), weight("weight_hh"), weight("bias_ih"),
                                       weight("bias_hh"), h0, nonlinearity=self.nonlinearity, **common)
        return y, h_n, None, ws

    def _backward_layer(self, dy, dh_n, dc_n, saved, lengths):
        """-> (dx, dh0, dc0 or None, {parameter name: gradient}) of one layer, both directions in
        one core call (dy (T, B, D * H_out), states as in _forward_layer)."""
        x, ws, weights, k = saved
        weight = lambda name: self._layer_parameters(k, name, weights)  # noqa: E731
        common = dict(lengths=lengths, bias=self.bias, bidirectional=self.bidirectional)
        if self.mode == "LSTM":
            g = F.lstm_backward(dy, dh_n, dc_n, x, weight("weight_ih"), weight("weight_hh"), ws,
                                w_hr=weight("weight_hr"), **common)
            dc0 = g.dc0
        elif self.mode == "GRU":
            g = F.gru_backward(dy, dh_n, x, weight("weight_ih"), weight("weight_hh"), ws, **common)
            dc0 = None
        else:
            g = F.rnn_backward(dy, dh_n, x, weight("weight_ih"), weight("weight_hh"), ws,
                               nonlinearity=self.nonlinearity, **common)
            dc0 = None
        named = {"weight_ih": g.dw_ih, "weight_hh": g.dw_hh}
        if self.bias:
            named.update({"bias_ih": g.db_ih, "bias_hh": g.db_hh})
        if self.proj_size:
            named["weight_hr"] = g.dw_hr
        grads = {}
        for direction, suffix in enumerate(self._suffixes(k)):  # a leading axis of 2 for two directions
            for name, grad in named.items():
                grads[name + suffix] = grad[direction] if self.bidirectional else grad
        return g.dx, g.dh0, dc0, grads

    # -- forward and backward ---------------------------------------------------------------------

    def forward(self, x, state=None, lengths=None):
        """Run the layers over a batch of sequences: returns (y, state_n).

        x is (T, B, input_size), or (B, T, input_size) with ``batch_first``. ``state`` is None
        (zeros) or, for the LSTM, (h0, c0) with h0 (num_layers * D, B, H_out) and c0
        (num_layers * D, B, hidden_size); for GRU and RNN one array h0 (num_layers * D, B, H).
        ``lengths`` (B,) gives each sequence's valid length in [1, T] (any order): outputs at
        t >= lengths[b] are zero and state_n holds each sequence's state after its last valid
        step; the reverse direction starts at that step. y is (T, B, D * H_out) (or batch-first),
        with the forward and reverse directions concatenated on the last axis.
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
        state0 = self._read_state(state, "state", B, allow_none=False)
        lengths = read_lengths(lengths, T, B)

        self._saved = None  # a new forward replaces whatever the last one kept
        # No copy of the input is kept for backward: the core's workspace holds what backward needs
        # of it, so changing x after the forward does not change the gradients.
        layer_input = np.ascontiguousarray(x_tm)
        h0, c0 = state0[0], state0[1] if self.mode == "LSTM" else None
        D = self.num_directions
        rows = (lambda state, k: None if state is None else state[k]) if D == 1 else \
            (lambda state, k: None if state is None else state[k * D:(k + 1) * D])  # layer k's (D, B, ·)
        saved, masks, h_n, c_n = [], [], [], []
        for k in range(self.num_layers):
            # Both directions in one core call: y (T, B, D * H_out), the directions side by side.
            layer_output, h_last, c_last, ws = self._forward_layer(layer_input, k, rows(h0, k), rows(c0, k), lengths)
            h_n.extend(h_last.reshape(D, B, -1))
            if c_last is not None:
                c_n.extend(c_last.reshape(D, B, -1))
            if self.training:
                # The weights as they were: an update between forward and backward must not leak in.
                weights = {name + suffix: self._weights_at_forward(name + suffix)
                           for suffix in self._suffixes(k)
                           for name in ("weight_ih", "weight_hh", "weight_hr") if name + suffix in self._parameters}
                # backward reads only x's shape (the workspace holds the input, packed): a
                # zero-stride stand-in keeps that without keeping the layer's input alive.
                x_shape = np.broadcast_to(np.zeros((), self.dtype), layer_input.shape)
                saved.append((x_shape, ws, weights, k))
            if self.training and self.dropout > 0 and k < self.num_layers - 1:
                keep = self._dropout_rng.random(layer_output.shape) >= self.dropout
                mask = keep.astype(self.dtype) / self.dtype.type(1.0 - self.dropout)
                layer_output = layer_output * mask
                masks.append(mask)
            else:
                masks.append(None)
            layer_input = layer_output
        if self.training:
            self._saved = (saved, masks, lengths, T, B)
        state_n = [np.stack(h_n)] + ([np.stack(c_n)] if self.mode == "LSTM" else [])
        return self._time_major(layer_input), self._pack_state(state_n)

    def _weights_at_forward(self, name: str) -> np.ndarray:
        """A copy of parameter `name` for backward, in a buffer the layer keeps from one forward to the
        next (only the last forward's copies are ever needed): copying into memory already in use
        saves the fresh pages a new copy would cost at every step."""
        parameter = self._parameters[name]  # (its shape and dtype never change: loads copy into it)
        copy = self._forward_copies.get(name)
        if copy is None:
            copy = self._forward_copies[name] = np.empty_like(parameter)
        np.copyto(copy, parameter)
        return copy

    def backward(self, dy, dstate=None):
        """Backpropagate through the most recent training-mode forward.

        ``dy`` is the gradient w.r.t. y (same shape as y) or None when only the final state
        matters; ``dstate`` has the structure of the forward's state ((dh_n, dc_n) for the LSTM,
        each may be None; dh_n for GRU and RNN) or is None. Parameter gradients are added to
        ``grads``; returns (dx, dstate0) with dstate0 in the state's structure. The forward's
        workspace is released: a second backward needs a new forward.
        """
        if self._saved is None:
            raise RuntimeError("backward: no training-mode forward to backpropagate through (call forward() "
                               "in training mode first; each forward supports one backward)")
        saved, masks, lengths, T, B = self._saved
        d_output = None
        if dy is not None:
            dy_array = as_real_array(dy, "dy", self.dtype)
            width = self.num_directions * self.output_size
            y_shape = (B, T, width) if self.batch_first else (T, B, width)
            check_shape(dy_array, "dy", y_shape, "of y " + ("(B, T, H)" if self.batch_first else "(T, B, H)"))
            d_output = self._time_major(dy_array)
        dstate_n = self._read_state(dstate, "dstate", B, allow_none=True)
        dh_n, dc_n = dstate_n[0], dstate_n[1] if self.mode == "LSTM" else None

        # From here on the forward's workspaces are this call's: each is dropped as soon as its layer
        # is done, so that its memory serves the layers below.
        self._saved = None
        D = self.num_directions
        rows = (lambda state, k: None if state is None else state[k]) if D == 1 else \
            (lambda state, k: None if state is None else state[k * D:(k + 1) * D])  # layer k's (D, B, ·)
        dh0, dc0 = [None] * self.num_layers, [None] * self.num_layers
        for k in reversed(range(self.num_layers)):
            if masks[k] is not None:
                d_output = d_output * masks[k]
            if d_output is not None:
                d_output = np.ascontiguousarray(d_output)
            # Both directions in one core call: it reads each direction's columns of dy and returns
            # dx with both directions' parts added.
            d_output, dh0[k], dc0[k], layer_grads = self._backward_layer(
                d_output, rows(dh_n, k), rows(dc_n, k), saved[k], lengths)
            saved[k] = None
            for name, grad in layer_grads.items():
                self.grads[name] += grad
        stack = lambda parts: np.concatenate([p.reshape(D, B, -1) for p in parts])  # noqa: E731
        dstate0 = [stack(dh0)] + ([stack(dc0)] if self.mode == "LSTM" else [])
        return self._time_major(d_output), self._pack_state(dstate0)


class LSTM(RNNBase):
    """Long short-term memory layers: a drop-in for ``torch.nn.LSTM`` with the same arguments.

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, proj_size=0, dtype=np.float32, seed=None)``. Parameters per layer k
    and direction: ``weight_ih_l{k}`` (4H, I_k), ``weight_hh_l{k}`` (4H, H_out), ``bias_ih_l{k}``
    and ``bias_hh_l{k}`` (4H,), with a projection ``weight_hr_l{k}`` (proj_size, H); suffix
    ``_reverse`` for the backward direction; gates in PyTorch's order i, f, g, o. The state is
    (h, c) with h (num_layers * D, B, H_out) and c (num_layers * D, B, hidden_size), H_out =
    proj_size or hidden_size.
    """

    mode, gates = "LSTM", 4

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, "tanh", dtype, seed)

    def stream(self, batch_size: int = 1, state=None):
        """A :class:`lstm_ext.stream.Stream` of this layer's current weights: ``step(x_t)`` with
        x_t (batch_size, input_size) returns h_t (batch_size, hidden_size) of the last layer and
        keeps (h, c), each (num_layers, batch_size, hidden_size), for the next step."""
        from .stream import Stream

        return Stream(self, batch_size, state)


class GRU(RNNBase):
    """Gated recurrent unit layers: a drop-in for ``torch.nn.GRU`` (gates r, z, n; PyTorch's
    formulation n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h).

    Arguments as LSTM's without proj_size; weights (3H, ·), biases (3H,); the state is one
    array h (num_layers * D, B, H).
    """

    mode, gates = "GRU", 3

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0,
                         "tanh", dtype, seed)


class RNN(RNNBase):
    """Elman RNN layers, h' = act(W_ih x + b_ih + W_hh h + b_hh): a drop-in for ``torch.nn.RNN``.

    Arguments as GRU's plus ``nonlinearity='tanh' | 'relu'``; weights (H, ·), biases (H,).
    """

    mode, gates = "RNN", 1

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0,
                         nonlinearity, dtype, seed)
