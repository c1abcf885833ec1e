"""The cell kinds, each described once: the only place LSTM, GRU and RNN are told apart.

A :class:`CellKind` holds what the rest of the package needs to know about a kind: its gates and
the parts of its state, its own constructor options, the compiled forward and backward of one
layer (``functional``), the NumPy reference of one direction (``reference``), and how its weights
map to torch.nn, Keras and ONNX. Layers, gradient flow, interop, the reference network and the
tools read the description; none of them compares kind names. A new kind or a variant of one is a
new or extended description here, its core functions and its tests.

For example::

    from lstm_ext import cells
    cells.LSTM.gates, cells.LSTM.state      # 4, ('h', 'c')
    cells.by_name("gru")                    # the GRU description (names as torch.nn and Keras spell them)

Weights are passed to ``forward`` / ``backward`` by their PyTorch base names (``weight_ih``,
``weight_hh``, ``bias_ih``, ``bias_hh``, ``weight_hr``), each an array or, with
``bidirectional=True``, a pair (forward, reverse); states as a list with one entry per part of
``state`` (None for zeros).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import functional as F
from . import reference

__all__ = ["Option", "CellKind", "LSTM", "GRU", "RNN", "KINDS", "by_name", "check_proj_size", "check_nonlinearity"]


# -- the kinds' own options ----------------------------------------------------------------------

def check_proj_size(proj_size, hidden_size: int) -> int:
    """proj_size: an integer in [0, hidden_size) (0: no projection)."""
    if isinstance(proj_size, bool) or not isinstance(proj_size, numbers.Integral):
        raise TypeError(f"proj_size: expected an integer in [0, hidden_size), got {type(proj_size).__name__} "
                        f"{proj_size!r}")
    if not 0 <= proj_size < hidden_size:
        raise ValueError(f"proj_size: expected an integer in [0, hidden_size) = [0, {hidden_size}), got {proj_size}")
    return int(proj_size)


def check_nonlinearity(nonlinearity, hidden_size: int) -> str:
    """nonlinearity: 'tanh' or 'relu'."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
    return str(nonlinearity)


@dataclass(frozen=True)
class Option:
    """A constructor argument only some kinds have (torch.nn's name and default)."""

    name: str
    default: Any
    check: Callable[[Any, int], Any]  # (value, hidden_size) -> the value, or TypeError / ValueError


PROJ_SIZE = Option("proj_size", 0, check_proj_size)
NONLINEARITY = Option("nonlinearity", "tanh", check_nonlinearity)


# -- the description -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CellKind:
    """One kind of recurrent cell (module docstring)."""

    name: str                    # "LSTM": the layer class's, torch.nn's and ONNX's name for it
    gates: tuple[str, ...]       # its gate blocks in the weights, PyTorch's order: rows G * H
    state: tuple[str, ...]       # the parts of its state: ("h", "c") or ("h",)
    options: tuple[Option, ...]  # its own constructor arguments
    # The compiled core, one layer (functional):
    #   forward(x, weights, state0, options, *, lengths, training, bidirectional) -> (y, state_n, workspace)
    #   backward(dy, dstate_n, x, weights, workspace, options, *, lengths, bias, bidirectional)
    #       -> (dx, dstate0, {weight name: gradient})
    forward: Callable
    backward: Callable
    # The NumPy reference, one direction (reference):
    #   reference_forward(x, weights, state0, options) -> (y, state_n, cache)
    #   reference_backward(dy, dstate_n, cache) -> dict of dx, dh0 (, dc0) and d + each weight's short name
    reference_forward: Callable
    reference_backward: Callable
    # Keras: the names its layer goes by, which of Keras's gate blocks each of PyTorch's is, and
    # whether the Keras layer has reset_after (then two biases, (2, G * H)).
    keras_names: tuple[str, ...]
    keras_gates: tuple[int, ...]
    keras_reset_after: bool
    # ONNX: which of PyTorch's gate blocks each of ONNX's gate blocks is, and the node's attributes
    # beyond hidden_size and direction, from the options and the number of directions.
    onnx_gates: tuple[int, ...]
    onnx_attributes: Callable[[dict, int], dict] = field(default=lambda options, directions: {})

    @property
    def num_gates(self) -> int:
        return len(self.gates)

    @property
    def has_cell_state(self) -> bool:
        return "c" in self.state

    def check_options(self, hidden_size: int, options: dict) -> dict:
        """The kind's options, checked, with defaults for those not given; TypeError for an
        option the kind does not have."""
        known = {option.name: option for option in self.options}
        unknown = [name for name in options if name not in known]
        if unknown:
            raise TypeError(f"{self.name}: unexpected argument(s) {unknown}; its own options are {list(known)}")
        return {name: option.check(options.get(name, option.default), hidden_size) for name, option in known.items()}

    def output_size(self, hidden_size: int, options: dict) -> int:
        """Size of h and of the output: proj_size when projecting, else hidden_size."""
        return options.get("proj_size", 0) or hidden_size

    def state_sizes(self, hidden_size: int, options: dict) -> dict[str, int]:
        """{part: size}: h of the output size, c of hidden_size."""
        sizes = {"h": self.output_size(hidden_size, options), "c": hidden_size}
        return {part: sizes[part] for part in self.state}

    def weight_shapes(self, input_size: int, hidden_size: int, bias: bool, options: dict) -> dict[str, tuple]:
        """{base name: shape} of one layer's weights in one direction, in torch's order."""
        G, H_out = self.num_gates * hidden_size, self.output_size(hidden_size, options)
        shapes = {"weight_ih": (G, input_size), "weight_hh": (G, H_out)}
        if bias:
            shapes.update({"bias_ih": (G,), "bias_hh": (G,)})
        if options.get("proj_size", 0):
            shapes["weight_hr"] = (options["proj_size"], hidden_size)
        return shapes


def _gradients(g, bias: bool, projection: bool) -> dict:
    """A functional *Grads tuple -> {weight base name: gradient}."""
    named = {"weight_ih": g.dw_ih, "weight_hh": g.dw_hh}
    if bias:
        named.update({"bias_ih": g.db_ih, "bias_hh": g.db_hh})
    if projection:
        named["weight_hr"] = g.dw_hr
    return named


# -- LSTM ------------------------------------------------------------------------------------------

def _lstm_forward(x, w, state0, options, *, lengths, training, bidirectional):
    h0, c0 = state0
    out = F.lstm_forward(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"), w.get("bias_hh"), h0, c0,
                         w_hr=w.get("weight_hr"), lengths=lengths, training=training, bidirectional=bidirectional)
    return out.y, [out.h_n, out.c_n], out.workspace


def _lstm_backward(dy, dstate_n, x, w, workspace, options, *, lengths, bias, bidirectional):
    dh_n, dc_n = dstate_n
    g = F.lstm_backward(dy, dh_n, dc_n, x, w["weight_ih"], w["weight_hh"], workspace, w_hr=w.get("weight_hr"),
                        lengths=lengths, bias=bias, bidirectional=bidirectional)
    return g.dx, [g.dh0, g.dc0], _gradients(g, bias, options["proj_size"] > 0)


def _lstm_reference_forward(x, w, state0, options):
    h0, c0 = state0
    y, h_n, c_n, cache = reference.lstm_forward(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"),
                                                w.get("bias_hh"), h0, c0, w.get("weight_hr"))
    return y, [h_n, c_n], cache


def _lstm_reference_backward(dy, dstate_n, cache):
    return reference.lstm_backward(dy, dstate_n[0], dstate_n[1], cache)


LSTM = CellKind(
    name="LSTM", gates=("i", "f", "g", "o"), state=("h", "c"), options=(PROJ_SIZE,),
    forward=_lstm_forward, backward=_lstm_backward,
    reference_forward=_lstm_reference_forward, reference_backward=_lstm_reference_backward,
    keras_names=("lstm",), keras_gates=(0, 1, 2, 3), keras_reset_after=False,
    onnx_gates=(0, 3, 1, 2),  # ONNX i, o, f, c
)


# -- GRU -------------------------------------------------------------------------------------------

def _gru_forward(x, w, state0, options, *, lengths, training, bidirectional):
    out = F.gru_forward(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"), w.get("bias_hh"), state0[0],
                        lengths=lengths, training=training, bidirectional=bidirectional)
    return out.y, [out.h_n], out.workspace


def _gru_backward(dy, dstate_n, x, w, workspace, options, *, lengths, bias, bidirectional):
    g = F.gru_backward(dy, dstate_n[0], x, w["weight_ih"], w["weight_hh"], workspace, lengths=lengths, bias=bias,
                       bidirectional=bidirectional)
    return g.dx, [g.dh0], _gradients(g, bias, False)


def _gru_reference_forward(x, w, state0, options):
    y, h_n, cache = reference.gru_forward(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"), w.get("bias_hh"),
                                          state0[0])
    return y, [h_n], cache


def _gru_reference_backward(dy, dstate_n, cache):
    return reference.gru_backward(dy, dstate_n[0], cache)


GRU = CellKind(
    name="GRU", gates=("r", "z", "n"), state=("h",), options=(),
    forward=_gru_forward, backward=_gru_backward,
    reference_forward=_gru_reference_forward, reference_backward=_gru_reference_backward,
    keras_names=("gru",), keras_gates=(1, 0, 2), keras_reset_after=True,  # Keras z, r, h
    onnx_gates=(1, 0, 2),  # ONNX z, r, h
    # PyTorch's GRU applies the reset gate after the recurrent product, ONNX's linear_before_reset.
    onnx_attributes=lambda options, directions: {"linear_before_reset": 1},
)


# -- RNN -------------------------------------------------------------------------------------------

def _rnn_forward(x, w, state0, options, *, lengths, training, bidirectional):
    out = F.rnn_forward(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"), w.get("bias_hh"), state0[0],
                        nonlinearity=options["nonlinearity"], lengths=lengths, training=training,
                        bidirectional=bidirectional)
    return out.y, [out.h_n], out.workspace


def _rnn_backward(dy, dstate_n, x, w, workspace, options, *, lengths, bias, bidirectional):
    g = F.rnn_backward(dy, dstate_n[0], x, w["weight_ih"], w["weight_hh"], workspace,
                       nonlinearity=options["nonlinearity"], lengths=lengths, bias=bias, bidirectional=bidirectional)
    return g.dx, [g.dh0], _gradients(g, bias, False)


def _rnn_reference_forward(x, w, state0, options):
    y, h_n, cache = reference.rnn_forward(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"), w.get("bias_hh"),
                                          state0[0], options["nonlinearity"])
    return y, [h_n], cache


def _rnn_reference_backward(dy, dstate_n, cache):
    return reference.rnn_backward(dy, dstate_n[0], cache)


RNN = CellKind(
    name="RNN", gates=("a",),  # one block: the pre-activation a of h' = act(a)
    state=("h",), options=(NONLINEARITY,),
    forward=_rnn_forward, backward=_rnn_backward,
    reference_forward=_rnn_reference_forward, reference_backward=_rnn_reference_backward,
    keras_names=("simple_rnn", "simplernn", "rnn"), keras_gates=(0,), keras_reset_after=False,
    onnx_gates=(0,),
    onnx_attributes=lambda options, directions: {"activations": [options["nonlinearity"].capitalize()] * directions},
)


KINDS: dict[str, CellKind] = {kind.name: kind for kind in (LSTM, GRU, RNN)}


def by_name(name: str) -> CellKind:
    """The kind named `name` as torch.nn or Keras spell it ('LSTM', 'gru', 'simple_rnn', ...)."""
    key = str(name).lower()
    for kind in KINDS.values():
        if key == kind.name.lower() or key in kind.keras_names:
            return kind
    raise ValueError(f"kind: expected 'lstm', 'gru' or 'simple_rnn', got {name!r}")


def reorder_gates(array: np.ndarray, order, axis: int = 0) -> np.ndarray:
    """The gate blocks of `array` along `axis`, block k of the result being block order[k]."""
    blocks = np.split(array, len(order), axis=axis)
    return np.concatenate([blocks[k] for k in order], axis=axis)
