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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, TypedDict, Union

import numpy as np
from numpy.typing import DTypeLike

from . import _core
from . import functional as F
from . import quantized_reference, reference

__all__ = ["Option", "CellKind", "LSTM", "GRU", "RNN", "KINDS", "by_name", "check_proj_size", "check_nonlinearity",
           "check_flag", "check_peephole", "check_layer_norm", "check_zoneout", "check_recurrent_dropout", "require_supported",
           "LAYER_NORM_NAMES", "TORCH_WEIGHT_NAMES", "WEIGHT_NAMES", "initial_value"]

# The types the descriptions' functions share (for mypy). A layer's weights in one direction by base
# name, each an array, or for the core's bidirectional call a pair (forward, reverse); the masks of
# one call (draw_masks), an array or a number each; a state, one array or None (zeros) per part.
_Weights = Mapping[str, Union[np.ndarray, tuple[np.ndarray, np.ndarray]]]
_Masks = dict[str, Union[np.ndarray, float]]
_State = Sequence[Optional[np.ndarray]]
# One direction's inference with its weights bound (CellKind.bind_int8, bind_bf16):
#   (x (T, B, I) float32, state0 [h0 or None (, c0 or None)], lengths (B,) int64 or None, reverse)
#       -> (y (T, B, H_out), state_n [h_n (, c_n)])
DirectionForward = Callable[[np.ndarray, _State, Optional[np.ndarray], bool], tuple[np.ndarray, list[np.ndarray]]]


def _bound_call(function: Callable[..., tuple[np.ndarray, ...]], weights: tuple[Any, ...],
                keywords: dict[str, Any]) -> DirectionForward:
    """A DirectionForward calling ``function(x, *weights, *state0, **keywords)``, with lengths and
    reverse as keywords only when set: a small call pays for every keyword pybind11 parses (with cold
    caches, 25 µs of a 170 µs int8 step for the six keywords at their defaults)."""
    def forward(x: np.ndarray, state0: _State, lengths: Optional[np.ndarray],
                reverse: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        more = keywords if lengths is None and not reverse else {**keywords, "lengths": lengths, "reverse": reverse}
        y, *state_n = function(x, *weights, *state0, **more)
        return y, state_n
    return forward


def _set(**keywords: Any) -> dict[str, Any]:
    """The keywords whose values differ from the core's defaults (None, 0, 0.0, 'tanh')."""
    def is_default(value: Any) -> bool:
        return (value is None or (isinstance(value, (int, float)) and value == 0)
                or (isinstance(value, str) and value == "tanh"))
    return {name: value for name, value in keywords.items() if not is_default(value)}
# What the core's one-layer forward and backward return: (y, state_n, workspace or None) and
# (dx, dstate0, {weight base name: gradient}); what the reference's return: (y, state_n, cache)
# and {dx, dh0 (, dc0), "d" + each weight's short name: the gradient or None}.
_CoreForward = tuple[np.ndarray, list[np.ndarray], Optional[np.ndarray]]
_CoreBackward = tuple[np.ndarray, list[np.ndarray], dict[str, np.ndarray]]
_ReferenceForward = tuple[np.ndarray, list[np.ndarray], dict[str, object]]
_ReferenceGradients = dict[str, Optional[np.ndarray]]


class _LstmMasks(TypedDict, total=False):
    """The LSTM's masks of one call (draw_masks), by functional's argument names."""

    keep_h: np.ndarray                # recurrent dropout (D, B, H_out)
    zone_c: Union[np.ndarray, float]  # zoneout (D, T, B, H), or z in inference
    zone_h: Union[np.ndarray, float]  # zoneout (D, T, B, H_out), or z in inference


_Pair = Union[np.ndarray, tuple[np.ndarray, np.ndarray]]  # an array, or one per direction


class _GruLayerNorm(TypedDict, total=False):
    """Layer normalization's gains and biases of one GRU call, by functional's argument names."""

    ln_ih_weight: _Pair
    ln_ih_bias: _Pair
    ln_hh_weight: _Pair
    ln_hh_bias: _Pair


class _LstmLayerNorm(_GruLayerNorm, total=False):
    """The LSTM's: the GRU's and those of c."""

    ln_c_weight: _Pair
    ln_c_bias: _Pair


class _ReferenceForwardFunction(Protocol):
    """CellKind.reference_forward: (x, weights, state0, options[, masks]) -> (y, state_n, cache)."""

    def __call__(self, x: np.ndarray, w: Mapping[str, np.ndarray], state0: _State, options: dict[str, Any],
                 masks: Optional[_Masks] = None) -> _ReferenceForward: ...


# -- the kinds' own options ----------------------------------------------------------------------

def check_proj_size(proj_size: object, hidden_size: int) -> int:
    """proj_size: an integer in [0, hidden_size) (0: no projection)."""
    if isinstance(proj_size, bool) or not isinstance(proj_size, numbers.Integral):
        raise TypeError(f"proj_size: expected an integer in [0, hidden_size), got {type(proj_size).__name__} "
                        f"{proj_size!r}")
    if not 0 <= int(proj_size) < hidden_size:  # int(): exact, and the Integral stub has no int comparisons
        raise ValueError(f"proj_size: expected an integer in [0, hidden_size) = [0, {hidden_size}), got {proj_size}")
    return int(proj_size)


def check_nonlinearity(nonlinearity: object, hidden_size: int) -> str:
    """nonlinearity: 'tanh' or 'relu'."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
    return str(nonlinearity)


def check_flag(value: object, name: str) -> bool:
    """A constructor's True-or-False argument: a bool (or NumPy's), never a string or a number."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_peephole(peephole: object, hidden_size: int) -> bool:
    """peephole: True or False."""
    return check_flag(peephole, "peephole")


def check_layer_norm(layer_norm: object, hidden_size: int) -> bool:
    """layer_norm: True or False."""
    return check_flag(layer_norm, "layer_norm")


def _probability(value: object, name: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {what}, got {type(value).__name__} {value!r}")
    if not 0.0 <= value < 1.0:  # type: ignore[operator]  # typeshed's numbers.Real lacks float comparisons
        raise ValueError(f"{name}: expected {what}, got {value}")
    return float(value)


def check_zoneout(zoneout: object, hidden_size: int) -> tuple[float, float]:
    """zoneout: a pair (z_c, z_h) of probabilities in [0, 1), or one for both."""
    what = "a pair (z_c, z_h) of probabilities in [0, 1), or one probability for both"
    if isinstance(zoneout, (tuple, list)):
        if len(zoneout) != 2:
            raise ValueError(f"zoneout: expected {what}, got {type(zoneout).__name__} of length {len(zoneout)}")
        return (_probability(zoneout[0], "zoneout[0] (z_c)", "a probability in [0, 1)"),
                _probability(zoneout[1], "zoneout[1] (z_h)", "a probability in [0, 1)"))
    z = _probability(zoneout, "zoneout", what)
    return (z, z)


def check_recurrent_dropout(p: object, hidden_size: int) -> float:
    """recurrent_dropout: a probability in [0, 1)."""
    return _probability(p, "recurrent_dropout", "a probability in [0, 1)")


@dataclass(frozen=True)
class Option:
    """A constructor argument only some kinds have (torch.nn's name and default, where torch.nn has
    it). ``supported_by`` names what else can run a layer with the option set away from its default:
    "torch" (torch.nn's layer, to_torch), "onnx" (export_onnx), "stream" (step-by-step
    inference), "flow" (gradient_flow)."""

    name: str
    default: Any
    check: Callable[[Any, int], Any]  # (value, hidden_size) -> the value, or TypeError / ValueError
    supported_by: frozenset[str] = frozenset({"torch", "onnx", "stream", "flow"})
    description: str = ""  # what a user is told when something cannot run it
    # True when the option decides the layer's parameters (which there are, their shapes): a built
    # layer cannot change it (setting the attribute raises AttributeError); the others can be set.
    fixed: bool = False


PROJ_SIZE = Option("proj_size", 0, check_proj_size, frozenset({"torch"}), "a projection", fixed=True)
NONLINEARITY = Option("nonlinearity", "tanh", check_nonlinearity)
PEEPHOLE = Option("peephole", False, check_peephole, frozenset({"onnx", "flow"}), "peephole connections",
                  fixed=True)
LAYER_NORM = Option("layer_norm", False, check_layer_norm, frozenset(), "layer normalization", fixed=True)
ZONEOUT = Option("zoneout", (0.0, 0.0), check_zoneout, frozenset(), "zoneout")
# Recurrent dropout changes training only: an inference forward is the plain cell's.
RECURRENT_DROPOUT = Option("recurrent_dropout", 0.0, check_recurrent_dropout, frozenset({"onnx", "stream"}),
                           "recurrent dropout")


def require_supported(kind: CellKind, options: dict[str, Any], consumer: str, what: str) -> None:
    """ValueError naming the options of a layer (set away from their defaults) that `consumer`
    ("torch", "onnx", "stream", "flow"; `what` says it in words) cannot run."""
    missing = [option for option in kind.options
               if consumer not in option.supported_by and options.get(option.name, option.default) != option.default]
    if missing:
        names = ", ".join(f"{option.name}={options[option.name]!r}" for option in missing)
        described = " and ".join(option.description for option in missing)
        raise ValueError(f"{what} cannot run a {kind.name} with {described} ({names})")


# -- the description -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CellKind:
    """One kind of recurrent cell (module docstring)."""

    name: str                    # "LSTM": the layer class's, torch.nn's and ONNX's name for it
    gates: tuple[str, ...]       # its gate blocks in the weights, PyTorch's order: rows G * H
    state: tuple[str, ...]       # the parts of its state: ("h", "c") or ("h",)
    options: tuple[Option, ...]  # its own constructor arguments
    # The compiled core, one layer (functional):
    #   forward(x, weights, state0, options, *, lengths, training, bidirectional, masks) -> (y, state_n, workspace)
    #   backward(dy, dstate_n, x, weights, workspace, options, *, lengths, bias, bidirectional, masks)
    #       -> (dx, dstate0, {weight name: gradient})
    # masks: the variants' arrays of one call (draw_masks), the same for a forward and its backward.
    forward: Callable[..., _CoreForward]
    backward: Callable[..., _CoreBackward]
    # The NumPy reference, one direction (reference):
    #   reference_forward(x, weights, state0, options, masks) -> (y, state_n, cache)
    #   reference_backward(dy, dstate_n, cache) -> dict of dx, dh0 (, dc0) and d + each weight's short name
    reference_forward: _ReferenceForwardFunction
    reference_backward: Callable[[Optional[np.ndarray], _State, dict[str, object]], _ReferenceGradients]
    # Inference in int8 or bfloat16, its NumPy reference (lstm_ext.quantized_reference):
    #   quantized_reference_forward(x, weights, state0, options, scheme) -> (y, state_n)
    quantized_reference_forward: Callable[..., tuple[np.ndarray, list[np.ndarray]]]
    # Inference in int8 or with bfloat16 recurrent weights through the core, one direction, its
    # weights bound once (lstm_ext.quantized): bind_int8(quantized, floats, options) with quantized
    # {base name: quantized.Int8Weight} of the weight matrices, bind_bf16(bf16, floats, options) with
    # bf16 {base name: packed bf16} of W_hh (in its gate blocks) and W_hr (_core.pack_bf16), floats
    # {base name: float32 array} of the rest (W_ih float32 of its bf16 values with bf16) -> a
    # DirectionForward.
    bind_int8: Callable[[dict[str, Any], dict[str, np.ndarray], dict[str, Any]], DirectionForward]
    bind_bf16: Callable[[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]], DirectionForward]
    # Keras: the names its layer goes by, which of Keras's gate blocks each of PyTorch's is, and
    # whether the Keras layer has reset_after (then two biases, (2, G * H)).
    keras_names: tuple[str, ...]
    keras_gates: tuple[int, ...]
    keras_reset_after: bool
    # ONNX: which of PyTorch's gate blocks each of ONNX's gate blocks is, and the node's attributes
    # beyond hidden_size and direction, from the options and the number of directions.
    onnx_gates: tuple[int, ...]
    onnx_attributes: Callable[[dict[str, Any], int], dict[str, object]] = field(default=lambda options, directions: {})
    # ONNX's peephole rows (i, o, f) from weight_ch's rows (i, f, o), for a kind with peepholes.
    onnx_peephole_gates: tuple[int, ...] = ()
    # The random masks of a layer's call for its options (recurrent dropout, zoneout):
    #   draw_masks(rng, options, T, B, directions, hidden_size, dtype, training) -> {name: array or number}
    draw_masks: Callable[[np.random.Generator, dict[str, Any], int, int, int, int, DTypeLike, bool], _Masks] = field(
        default=lambda *args: {})
    # Whether ONNX Runtime has this kind's int8 operator (com.microsoft.DynamicQuantizeLSTM: the LSTM).
    onnx_int8: bool = False

    @property
    def num_gates(self) -> int:
        return len(self.gates)

    @property
    def has_cell_state(self) -> bool:
        return "c" in self.state

    def check_options(self, hidden_size: int, options: dict[str, Any]) -> dict[str, Any]:
        """The kind's options, checked, with defaults for those not given; TypeError for an
        option the kind does not have."""
        known = {option.name: option for option in self.options}
        unknown = [name for name in options if name not in known]
        if unknown:
            raise TypeError(f"{self.name}: unexpected argument(s) {unknown}; its own options are {list(known)}")
        return {name: option.check(options.get(name, option.default), hidden_size) for name, option in known.items()}

    def output_size(self, hidden_size: int, options: dict[str, Any]) -> int:
        """Size of h and of the output: proj_size when projecting, else hidden_size."""
        return options.get("proj_size", 0) or hidden_size

    def state_sizes(self, hidden_size: int, options: dict[str, Any]) -> dict[str, int]:
        """{part: size}: h of the output size, c of hidden_size."""
        sizes = {"h": self.output_size(hidden_size, options), "c": hidden_size}
        return {part: sizes[part] for part in self.state}

    def weight_shapes(self, input_size: int, hidden_size: int, bias: bool, options: dict[str, Any]
                      ) -> dict[str, tuple[int, ...]]:
        """{base name: shape} of one layer's weights in one direction, in torch's order."""
        G, H_out = self.num_gates * hidden_size, self.output_size(hidden_size, options)
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (G, input_size), "weight_hh": (G, H_out)}
        if bias:
            shapes.update({"bias_ih": (G,), "bias_hh": (G,)})
        if options.get("proj_size", 0):
            shapes["weight_hr"] = (options["proj_size"], hidden_size)
        if options.get("peephole", False):
            shapes["weight_ch"] = (3, hidden_size)
        if options.get("layer_norm", False):  # LN_ih and LN_hh over the G pre-activations, LN_c over c
            for name in LAYER_NORM_NAMES[:4]:
                shapes[name] = (G,)
            if self.has_cell_state:
                shapes.update({"ln_c_weight": (hidden_size,), "ln_c_bias": (hidden_size,)})
        return shapes


# Layer normalization's gains (initially 1) and biases (initially 0), by base name.
LAYER_NORM_NAMES = ("ln_ih_weight", "ln_ih_bias", "ln_hh_weight", "ln_hh_bias", "ln_c_weight", "ln_c_bias")
# Every weight's base name, in the order of weight_shapes (PyTorch's, then the variants').
WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_ch") + LAYER_NORM_NAMES


# PyTorch's weights: a layer draws them in PyTorch's order from its seed's generator, and the
# variants' random weights (peepholes) from a generator of their own, so that a layer with a variant
# has the same plain weights as the plain layer with the same seed.
TORCH_WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


def initial_value(base_name: str) -> Optional[float]:
    """The constant a weight starts at (layer normalization's gains 1, biases 0), or None for
    PyTorch's random initialisation."""
    if base_name in LAYER_NORM_NAMES:
        return 1.0 if base_name.endswith("_weight") else 0.0
    return None


def _gru_layer_norm(w: _Weights) -> _GruLayerNorm:
    """The layer normalization arrays among a GRU layer's weights (none: {}), as functional's
    keyword arguments."""
    if "ln_ih_weight" not in w:
        return {}
    return {"ln_ih_weight": w["ln_ih_weight"], "ln_ih_bias": w["ln_ih_bias"], "ln_hh_weight": w["ln_hh_weight"],
            "ln_hh_bias": w["ln_hh_bias"]}


def _lstm_layer_norm(w: _Weights) -> _LstmLayerNorm:
    """The same for an LSTM layer, with LN_c's."""
    if "ln_ih_weight" not in w:
        return {}
    return {**_gru_layer_norm(w), "ln_c_weight": w["ln_c_weight"], "ln_c_bias": w["ln_c_bias"]}


def _gradients(g: Union[F.LstmGrads, F.GruGrads, F.RnnGrads], bias: bool, projection: bool,
               peephole: bool = False, layer_norm: bool = False) -> dict[str, np.ndarray]:
    """A functional *Grads tuple -> {weight base name: gradient}."""
    named = {"weight_ih": g.dw_ih, "weight_hh": g.dw_hh}
    if bias:
        assert g.db_ih is not None and g.db_hh is not None  # the core returns them with bias=True
        named.update({"bias_ih": g.db_ih, "bias_hh": g.db_hh})
    if projection:
        assert isinstance(g, F.LstmGrads) and g.dw_hr is not None  # the LSTM's, with w_hr
        named["weight_hr"] = g.dw_hr
    if peephole:
        assert isinstance(g, F.LstmGrads) and g.dw_ch is not None  # the LSTM's, with w_ch
        named["weight_ch"] = g.dw_ch
    if layer_norm:
        named.update({name: getattr(g, "d" + name) for name in LAYER_NORM_NAMES if hasattr(g, "d" + name)})
    return named


# -- LSTM ------------------------------------------------------------------------------------------

def _lstm_forward(x: np.ndarray, w: _Weights, state0: _State, options: dict[str, Any], *, lengths: Optional[np.ndarray],
                  training: bool, bidirectional: bool, masks: Optional[_LstmMasks] = None) -> _CoreForward:
    h0, c0 = state0
    masks = masks or {}
    out = F.lstm_forward(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"), w.get("bias_hh"), h0, c0,
                         w_hr=w.get("weight_hr"), w_ch=w.get("weight_ch"), lengths=lengths, training=training,
                         bidirectional=bidirectional, **masks, **_lstm_layer_norm(w))
    return out.y, [out.h_n, out.c_n], out.workspace


def _lstm_backward(dy: Optional[np.ndarray], dstate_n: _State, x: np.ndarray, w: _Weights,
                   workspace: Optional[np.ndarray], options: dict[str, Any], *, lengths: Optional[np.ndarray],
                   bias: bool, bidirectional: bool, masks: Optional[_LstmMasks] = None) -> _CoreBackward:
    dh_n, dc_n = dstate_n
    masks = masks or {}
    g = F.lstm_backward(dy, dh_n, dc_n, x, w["weight_ih"], w["weight_hh"], workspace, w_hr=w.get("weight_hr"),
                        w_ch=w.get("weight_ch"), lengths=lengths, bias=bias, bidirectional=bidirectional, **masks,
                        **_lstm_layer_norm(w))
    return g.dx, [g.dh0, g.dc0], _gradients(g, bias, options.get("proj_size", 0) > 0, options.get("peephole", False),
                                            options.get("layer_norm", False))


def _lstm_bind_int8(quantized: dict[str, Any], floats: dict[str, np.ndarray],
                    options: dict[str, Any]) -> DirectionForward:
    z_c, z_h = options.get("zoneout", (0.0, 0.0))
    w_hr = quantized["weight_hr"].parts if "weight_hr" in quantized else None
    return _bound_call(_core.lstm_forward_int8, (quantized["weight_ih"].parts, quantized["weight_hh"].parts,
                                                 floats.get("bias_ih"), floats.get("bias_hh")),
                       _set(w_hr=w_hr, w_ch=floats.get("weight_ch"), zone_c=z_c, zone_h=z_h))


def _lstm_bind_bf16(bf16: dict[str, np.ndarray], floats: dict[str, np.ndarray],
                    options: dict[str, Any]) -> DirectionForward:
    z_c, z_h = options.get("zoneout", (0.0, 0.0))
    return _bound_call(_core.lstm_forward_bf16, (floats["weight_ih"], bf16["weight_hh"], floats.get("bias_ih"),
                                                 floats.get("bias_hh")),
                       _set(proj_size=options.get("proj_size", 0), w_hr=bf16.get("weight_hr"),
                            w_ch=floats.get("weight_ch"), zone_c=z_c, zone_h=z_h))


def _lstm_masks(rng: np.random.Generator, options: dict[str, Any], T: int, B: int, directions: int, hidden_size: int,
                dtype: DTypeLike, training: bool) -> _Masks:
    """{keep_h, zone_c, zone_h} of one layer's call (functional's arguments), as options ask:
    recurrent dropout, one mask per sequence and direction, keep_h (D, B, H_out) of 0 and
    1 / (1 − p) when training (nothing in inference); zoneout, when training, masks of 0 and 1
    (1 with probability z: keep the previous value) zone_c (D, T, B, H) and zone_h (D, T, B, H_out),
    in inference the expectation z itself. D = 1 drops the leading axis."""
    dtype = np.dtype(dtype)
    H_out = options.get("proj_size", 0) or hidden_size
    lead = (directions,) if directions > 1 else ()
    masks: _Masks = {}
    p = options.get("recurrent_dropout", 0.0)
    if training and p > 0:
        keep = rng.random(lead + (B, H_out)) >= p
        masks["keep_h"] = keep.astype(dtype) / dtype.type(1.0 - p)
    for name, z, size in zip(("zone_c", "zone_h"), options.get("zoneout", (0.0, 0.0)), (hidden_size, H_out)):
        if z > 0:
            masks[name] = (rng.random(lead + (T, B, size)) < z).astype(dtype) if training else z
    return masks


def _lstm_reference_forward(x: np.ndarray, w: Mapping[str, np.ndarray], state0: _State, options: dict[str, Any],
                            masks: Optional[_Masks] = None) -> _ReferenceForward:
    # masks: {} or None, or any of keep_h (B, H_out), zone_c (T, B, H), zone_h (T, B, H_out);
    # w's ln_* entries (layer norm's γ and β), when present, go to the reference as its ln dict
    h0, c0 = state0
    ln = {name: value for name, value in w.items() if name.startswith("ln_")} or None
    y, h_n, c_n, cache = reference.lstm_forward(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"),
                                                w.get("bias_hh"), h0, c0, w.get("weight_hr"),
                                                w_ch=w.get("weight_ch"), ln=ln, **(masks or {}))
    return y, [h_n, c_n], cache


def _lstm_reference_backward(dy: Optional[np.ndarray], dstate_n: _State, cache: dict[str, object]
                            ) -> _ReferenceGradients:
    return reference.lstm_backward(dy, dstate_n[0], dstate_n[1], cache)


LSTM = CellKind(
    name="LSTM", gates=("i", "f", "g", "o"), state=("h", "c"),
    options=(PROJ_SIZE, PEEPHOLE, LAYER_NORM, ZONEOUT, RECURRENT_DROPOUT),
    forward=_lstm_forward, backward=_lstm_backward,
    reference_forward=_lstm_reference_forward, reference_backward=_lstm_reference_backward,
    quantized_reference_forward=quantized_reference.lstm_layer_forward, bind_int8=_lstm_bind_int8,
    bind_bf16=_lstm_bind_bf16, onnx_int8=True,
    keras_names=("lstm",), keras_gates=(0, 1, 2, 3), keras_reset_after=False,
    onnx_gates=(0, 3, 1, 2),  # ONNX i, o, f, c
    onnx_peephole_gates=(0, 2, 1),  # ONNX P: i, o, f
    draw_masks=_lstm_masks,
)


# -- GRU -------------------------------------------------------------------------------------------

def _gru_forward(x: np.ndarray, w: _Weights, state0: _State, options: dict[str, Any], *, lengths: Optional[np.ndarray],
                 training: bool, bidirectional: bool, masks: Optional[_Masks] = None) -> _CoreForward:
    out = F.gru_forward(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"), w.get("bias_hh"), state0[0],
                        lengths=lengths, training=training, bidirectional=bidirectional, **_gru_layer_norm(w))
    return out.y, [out.h_n], out.workspace


def _gru_backward(dy: Optional[np.ndarray], dstate_n: _State, x: np.ndarray, w: _Weights,
                  workspace: Optional[np.ndarray], options: dict[str, Any], *, lengths: Optional[np.ndarray],
                  bias: bool, bidirectional: bool, masks: Optional[_Masks] = None) -> _CoreBackward:
    g = F.gru_backward(dy, dstate_n[0], x, w["weight_ih"], w["weight_hh"], workspace, lengths=lengths, bias=bias,
                       bidirectional=bidirectional, **_gru_layer_norm(w))
    return g.dx, [g.dh0], _gradients(g, bias, False, layer_norm=options.get("layer_norm", False))


def _gru_bind_int8(quantized: dict[str, Any], floats: dict[str, np.ndarray],
                   options: dict[str, Any]) -> DirectionForward:
    return _bound_call(_core.gru_forward_int8, (quantized["weight_ih"].parts, quantized["weight_hh"].parts,
                                                floats.get("bias_ih"), floats.get("bias_hh")), {})


def _gru_bind_bf16(bf16: dict[str, np.ndarray], floats: dict[str, np.ndarray],
                   options: dict[str, Any]) -> DirectionForward:
    return _bound_call(_core.gru_forward_bf16, (floats["weight_ih"], bf16["weight_hh"], floats.get("bias_ih"),
                                                floats.get("bias_hh")), {})


def _gru_reference_forward(x: np.ndarray, w: Mapping[str, np.ndarray], state0: _State, options: dict[str, Any],
                           masks: Optional[_Masks] = None) -> _ReferenceForward:
    if masks:
        raise ValueError(f"masks: the GRU has no cell masks, got {sorted(masks)}")
    ln = {name: value for name, value in w.items() if name.startswith("ln_")} or None  # layer norm's γ, β
    y, h_n, cache = reference.gru_forward(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"), w.get("bias_hh"),
                                          state0[0], ln=ln)
    return y, [h_n], cache


def _gru_reference_backward(dy: Optional[np.ndarray], dstate_n: _State, cache: dict[str, object]
                           ) -> _ReferenceGradients:
    return reference.gru_backward(dy, dstate_n[0], cache)


GRU = CellKind(
    name="GRU", gates=("r", "z", "n"), state=("h",), options=(LAYER_NORM,),
    forward=_gru_forward, backward=_gru_backward,
    reference_forward=_gru_reference_forward, reference_backward=_gru_reference_backward,
    quantized_reference_forward=quantized_reference.gru_layer_forward, bind_int8=_gru_bind_int8,
    bind_bf16=_gru_bind_bf16,
    keras_names=("gru",), keras_gates=(1, 0, 2), keras_reset_after=True,  # Keras z, r, h
    onnx_gates=(1, 0, 2),  # ONNX z, r, h
    # PyTorch's GRU applies the reset gate after the recurrent product, ONNX's linear_before_reset.
    onnx_attributes=lambda options, directions: {"linear_before_reset": 1},
)


# -- RNN -------------------------------------------------------------------------------------------

def _rnn_forward(x: np.ndarray, w: _Weights, state0: _State, options: dict[str, Any], *, lengths: Optional[np.ndarray],
                 training: bool, bidirectional: bool, masks: Optional[_Masks] = None) -> _CoreForward:
    out = F.rnn_forward(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"), w.get("bias_hh"), state0[0],
                        nonlinearity=options["nonlinearity"], lengths=lengths, training=training,
                        bidirectional=bidirectional)
    return out.y, [out.h_n], out.workspace


def _rnn_backward(dy: Optional[np.ndarray], dstate_n: _State, x: np.ndarray, w: _Weights,
                  workspace: Optional[np.ndarray], options: dict[str, Any], *, lengths: Optional[np.ndarray],
                  bias: bool, bidirectional: bool, masks: Optional[_Masks] = None) -> _CoreBackward:
    g = F.rnn_backward(dy, dstate_n[0], x, w["weight_ih"], w["weight_hh"], workspace,
                       nonlinearity=options["nonlinearity"], lengths=lengths, bias=bias, bidirectional=bidirectional)
    return g.dx, [g.dh0], _gradients(g, bias, False)


def _rnn_bind_int8(quantized: dict[str, Any], floats: dict[str, np.ndarray],
                   options: dict[str, Any]) -> DirectionForward:
    return _bound_call(_core.rnn_forward_int8, (quantized["weight_ih"].parts, quantized["weight_hh"].parts,
                                                floats.get("bias_ih"), floats.get("bias_hh")),
                       _set(nonlinearity=options["nonlinearity"]))


def _rnn_bind_bf16(bf16: dict[str, np.ndarray], floats: dict[str, np.ndarray],
                   options: dict[str, Any]) -> DirectionForward:
    return _bound_call(_core.rnn_forward_bf16, (floats["weight_ih"], bf16["weight_hh"], floats.get("bias_ih"),
                                                floats.get("bias_hh")), _set(nonlinearity=options["nonlinearity"]))


def _rnn_reference_forward(x: np.ndarray, w: Mapping[str, np.ndarray], state0: _State, options: dict[str, Any],
                           masks: Optional[_Masks] = None) -> _ReferenceForward:
    if masks:
        raise ValueError(f"masks: the RNN has no cell masks, got {sorted(masks)}")
    y, h_n, cache = reference.rnn_forward(x, w["weight_ih"], w["weight_hh"], w.get("bias_ih"), w.get("bias_hh"),
                                          state0[0], options["nonlinearity"])
    return y, [h_n], cache


def _rnn_reference_backward(dy: Optional[np.ndarray], dstate_n: _State, cache: dict[str, object]
                           ) -> _ReferenceGradients:
    return reference.rnn_backward(dy, dstate_n[0], cache)


RNN = CellKind(
    name="RNN", gates=("a",),  # one block: the pre-activation a of h' = act(a)
    state=("h",), options=(NONLINEARITY,),
    forward=_rnn_forward, backward=_rnn_backward,
    reference_forward=_rnn_reference_forward, reference_backward=_rnn_reference_backward,
    quantized_reference_forward=quantized_reference.rnn_layer_forward, bind_int8=_rnn_bind_int8,
    bind_bf16=_rnn_bind_bf16,
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


def reorder_gates(array: np.ndarray, order: Sequence[int], axis: int = 0) -> np.ndarray:
    """The gate blocks of `array` along `axis`, block k of the result being block order[k]."""
    blocks = np.split(array, len(order), axis=axis)
    reordered: np.ndarray = np.concatenate([blocks[k] for k in order], axis=axis)
    return reordered
