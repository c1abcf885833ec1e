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
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Optional, TypeVar, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import cells
from ._checks import as_real_array, check_float_dtype, check_positive_int, check_shape, read_lengths
from ._typing import LayerState
from .stream import Stream

__all__ = ["Module", "RNNBase", "LSTM", "GRU", "RNN"]

_M = TypeVar("_M", bound="Module")

# A state argument: None (zeros), one array h (GRU, RNN), or a tuple (h, c) (LSTM) whose entries
# may be None where zeros are allowed (backward's dstate).
StateLike = Union[ArrayLike, Sequence[Optional[ArrayLike]], None]
# The variants' masks of one layer's call (cells.CellKind.draw_masks): {name: array or number}.
_Masks = dict[str, Union[np.ndarray, float]]
# One layer's weights for a core call, by base name: the array for one direction, the pair
# (forward, reverse) for two.
_Weights = dict[str, Union[np.ndarray, tuple[Optional[np.ndarray], ...]]]
# What a training forward keeps of one layer for backward: (a stand-in of the input with its
# shape, the core's workspace, the weights as at the forward, the layer's index, its masks).
_LayerSaved = tuple[np.ndarray, Optional[np.ndarray], dict[str, np.ndarray], int, _Masks]


class Module:
    """What every layer shares: parameters and gradients by name, train/eval, state dicts."""

    # A module's constructor arguments are its attributes, under one rule: those that decide its
    # parameters (which there are, their shapes, their dtype, their initial values) are fixed once
    # the constructor has set them, and setting one raises AttributeError naming how to build
    # another module; the others can be set, are checked as the constructor checks them
    # (_checked_setting), and are used from the next call. A parameter set as an attribute is
    # checked like load_state_dict's arrays and copied into the parameter (optimizers keep it).
    FIXED_ARGUMENTS: tuple[str, ...] = ("dtype",)

    def __init__(self, dtype: DTypeLike = np.float32) -> None:
        self._parameters: dict[str, np.ndarray] = {}
        self.dtype = check_float_dtype(dtype)
        self.training = True
        self.grads: dict[str, np.ndarray] = {}

    def __setattr__(self, name: str, value: Any) -> None:
        if self._is_fixed(name) and name in self.__dict__:
            kind = type(self).__name__
            raise AttributeError(f"{kind}.{name} is fixed once the {kind} is built (it decides the parameters): build "
                                 f"another one, e.g. lstm_ext.{kind}(**{{**old.config(), {name!r}: ...}}), and load "
                                 "the weights that still fit")
        parameter = self.__dict__.get("_parameters", {}).get(name)
        if parameter is not None and name in self.__dict__:
            array = as_real_array(value, name, self.dtype)
            check_shape(array, name, parameter.shape)
            parameter[...] = array
            return
        object.__setattr__(self, name, self._checked_setting(name, value))

    def _is_fixed(self, name: str) -> bool:
        return name in self.FIXED_ARGUMENTS

    def _checked_setting(self, name: str, value: Any) -> Any:
        """`value` checked as the constructor checks argument `name` (no argument: as it is)."""
        return value

    def _add_parameter(self, name: str, value: np.ndarray) -> None:
        value = np.ascontiguousarray(value, dtype=self.dtype)
        self._parameters[name] = value
        self.grads[name] = np.zeros_like(value)
        setattr(self, name, value)

    def named_parameters(self) -> dict[str, np.ndarray]:
        """The parameters themselves (not copies), by state-dict name."""
        return dict(self._parameters)

    @classmethod
    def parameter_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        """{name: shape} of the parameters of a module built from ``config`` (config()), computed
        without building it: what a checkpoint is checked against before anything is allocated."""
        return {}

    def config(self) -> dict[str, Any]:
        """The constructor's arguments (JSON-able): enough to build the same module again."""
        raise NotImplementedError(f"{type(self).__name__}.config")

    # Each kind of module has its own forward and backward arguments and results (the recurrent
    # layers take a state and return one), hence the open signatures here.
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The module's output for its input; in training mode, keeps what backward needs."""
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, *args: Any, **kwargs: Any) -> Any:
        """Backpropagate through the last training-mode forward: adds into ``grads`` and returns
        the gradient of the forward's input."""
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def train(self: _M, mode: bool = True) -> _M:
        """Training mode (forward keeps a workspace for backward; dropout is active); returns self."""
        self.training = bool(mode)
        return self

    def eval(self: _M) -> _M:
        """Inference mode (forward keeps nothing; no dropout); returns self."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set every accumulated parameter gradient to zero."""
        for grad in self.grads.values():
            grad.fill(0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters under PyTorch's names."""
        return {name: value.copy() for name, value in self._parameters.items()}

    def load_state_dict(self, state_dict: Mapping[str, ArrayLike]) -> None:
        """Load parameters from a dict of arrays (e.g. a torch state dict, tensors or NumPy).

        Keys must match exactly (KeyError naming the missing or unexpected ones) and every array
        must have its parameter's shape (ValueError). Nothing is changed unless all of it is valid.
        """
        missing = [name for name in self._parameters if name not in state_dict]
        unexpected = [name for name in state_dict if name not in self._parameters]
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}; "
                           f"expected exactly {list(self._parameters)}")
        loaded: dict[str, np.ndarray] = {}
        for name, current in self._parameters.items():
            value = as_real_array(state_dict[name], name, self.dtype)
            check_shape(value, name, current.shape)
            loaded[name] = value
        for name, value in loaded.items():
            self._parameters[name][...] = value


_WORDS = {2: "two", 3: "three", 4: "four"}


def _check_dropout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"dropout: expected a probability in [0, 1), got {type(value).__name__} {value!r}")
    if not 0.0 <= value < 1.0:  # type: ignore[operator]  # typeshed: Real lacks __ge__
        raise ValueError(f"dropout: expected a probability in [0, 1), got {value}")
    return float(value)


class RNNBase(Module):
    """Stacked, optionally bidirectional recurrent layers of one kind: ``cell``, its description
    in :mod:`lstm_ext.cells` (gates, state, options, core calls)."""

    cell: cells.CellKind  # set by each kind's class

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype: DTypeLike = np.float32, seed: Optional[int] = None, **options: Any) -> None:
        super().__init__(dtype)
        self.input_size = check_positive_int(input_size, "input_size")
        self.hidden_size = check_positive_int(hidden_size, "hidden_size")
        self.num_layers = check_positive_int(num_layers, "num_layers")
        self.bias = cells.check_flag(bias, "bias")
        self.batch_first = cells.check_flag(batch_first, "batch_first")
        self.dropout = _check_dropout(dropout)
        self.bidirectional = cells.check_flag(bidirectional, "bidirectional")
        # The kind's own options (LSTM proj_size, RNN nonlinearity), also attributes of the layer.
        self._options: dict[str, Any] = self.cell.check_options(self.hidden_size, options)
        for name, value in self._options.items():
            setattr(self, name, value)
        self.seed = seed
        self._warn_if_dropout_has_no_effect(stacklevel=4)
        # What backward needs, from the last training-mode forward: (per layer what it keeps, the
        # dropout masks between layers, lengths, T, B, the options and batch_first it ran with).
        self._saved: Optional[tuple[list[_LayerSaved], list[Optional[np.ndarray]], Optional[NDArray[np.int64]],
                                    int, int, dict[str, Any], bool]] = None
        self._forward_copies: dict[str, np.ndarray] = {}  # the weights as at that forward (_weights_at_forward)

        # PyTorch's parameters, in its order, from U(−1/√H, 1/√H); drawn in float64 so that layers
        # of either dtype with the same seed match. Dropout masks come from a stream of their own.
        # The variants' random weights (peepholes) from a generator of their own (cells.TORCH_WEIGHT_NAMES).
        init = np.random.default_rng(seed)
        self._dropout_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
        variant_init = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, shape in self.parameter_shapes(self.config()).items():
            base_name = re.sub(r"_l\d+(_reverse)?$", "", name)
            constant = cells.initial_value(base_name)
            if constant is not None:  # layer normalization's gains and biases
                self._add_parameter(name, np.full(shape, constant))
            else:
                generator = init if base_name in cells.TORCH_WEIGHT_NAMES else variant_init
                self._add_parameter(name, generator.uniform(-bound, bound, size=shape))
        self._built = True  # from here on, a setting is checked (_checked_setting)

    FIXED_ARGUMENTS = ("input_size", "hidden_size", "num_layers", "bias", "bidirectional", "dtype", "seed")

    def _is_fixed(self, name: str) -> bool:  # the arguments above and proj_size, peephole, layer_norm
        return super()._is_fixed(name) or any(option.name == name and option.fixed for option in self.cell.options)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "dropout" and self.__dict__.get("_built", False):
            self._warn_if_dropout_has_no_effect(stacklevel=3)

    def _checked_setting(self, name: str, value: Any) -> Any:
        """After the constructor: dropout, batch_first and the kind's options that are not fixed
        (zoneout, recurrent_dropout, nonlinearity) checked as the constructor checks them; the
        kind's options also go to the options the calls read."""
        if not self.__dict__.get("_built", False):
            return value  # the constructor checks its arguments itself
        if name == "dropout":
            return _check_dropout(value)
        if name == "batch_first":
            return cells.check_flag(value, "batch_first")
        option = next((option for option in self.cell.options if option.name == name), None)
        if option is not None:
            value = option.check(value, self.hidden_size)
            self._options[name] = value
        return value

    def _warn_if_dropout_has_no_effect(self, stacklevel: int) -> None:
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(f"dropout={self.dropout} applies between stacked layers: with num_layers=1 it has no "
                          "effect", UserWarning, stacklevel=stacklevel)

    @property
    def options(self) -> dict[str, Any]:
        """The kind's own options by name (a copy: set them as the layer's attributes)."""
        return dict(self._options)

    @property
    def mode(self) -> str:
        """The kind's name, as torch.nn's ``mode``: 'LSTM', 'GRU' or 'RNN'."""
        return self.cell.name

    @classmethod
    def parameter_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        """{name: shape} of the parameters of a layer built from ``config`` (the constructor's
        arguments, as config() gives them), in torch's order, computed without building it."""
        H = check_positive_int(config["hidden_size"], "hidden_size")
        I = check_positive_int(config["input_size"], "input_size")
        num_layers = check_positive_int(config.get("num_layers", 1), "num_layers")
        options = cls.cell.check_options(H, {option.name: config[option.name] for option in cls.cell.options
                                             if option.name in config})
        D = 2 if config.get("bidirectional", False) else 1
        H_out = cls.cell.output_size(H, options)
        shapes: dict[str, tuple[int, ...]] = {}
        for k in range(num_layers):
            layer_input = I if k == 0 else D * H_out
            for suffix in [f"_l{k}", f"_l{k}_reverse"][:D]:
                for name, shape in cls.cell.weight_shapes(layer_input, H, config.get("bias", True), options).items():
                    shapes[name + suffix] = shape
        return shapes

    def config(self) -> dict[str, Any]:
        """The constructor's arguments (JSON-able): enough to build the same layer again."""
        return dict(input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                    bias=self.bias, batch_first=self.batch_first, dropout=self.dropout,
                    bidirectional=self.bidirectional, dtype=self.dtype.name,
                    seed=self.seed if isinstance(self.seed, int) else None,
                    **{name: list(value) if isinstance(value, tuple) else value  # as JSON gives them back
                       for name, value in self._options.items()})

    def rng_state(self) -> Mapping[str, Any]:
        """The state of the generator the dropout masks come from (JSON-able)."""
        return self._dropout_rng.bit_generator.state

    def set_rng_state(self, state: Mapping[str, Any]) -> None:
        """Continue the dropout masks from a state given by rng_state()."""
        self._dropout_rng.bit_generator.state = state

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Size of h and of each direction's output: proj_size when projecting, else hidden_size."""
        return self.cell.output_size(self.hidden_size, self._options)

    def to_torch(self) -> Any:  # a torch.nn.Module
        """The equal torch.nn.LSTM / GRU / RNN module: same arguments, weights, dtype and mode
        (needs torch, imported here only)."""
        cells.require_supported(self.cell, self._options, "torch", f"torch.nn.{self.cell.name}")
        import torch

        torch_class = getattr(torch.nn, self.cell.name)
        torch_options = {option.name: self._options[option.name] for option in self.cell.options
                         if "torch" in option.supported_by}
        module = torch_class(self.input_size, self.hidden_size, num_layers=self.num_layers, bias=self.bias,
                             batch_first=self.batch_first, dropout=self.dropout, bidirectional=self.bidirectional,
                             dtype=torch.float64 if self.dtype == np.float64 else torch.float32, **torch_options)
        module.load_state_dict({name: torch.tensor(value) for name, value in self.state_dict().items()})
        return module.train(self.training)

    def _suffixes(self, k: int) -> list[str]:
        return [f"_l{k}", f"_l{k}_reverse"][: self.num_directions]

    def __repr__(self) -> str:
        args = [str(self.input_size), str(self.hidden_size)]
        defaults = dict(num_layers=1, bias=True, batch_first=False, dropout=0.0, bidirectional=False,
                        **{option.name: option.default for option in self.cell.options})
        for name, default in defaults.items():
            if getattr(self, name) != default:
                args.append(f"{name}={getattr(self, name)!r}")
        args.append(f"dtype={self.dtype.name}")
        return f"{type(self).__name__}({', '.join(args)})"

    # -- shapes at the Python edge ----------------------------------------------------------------

    def _time_major(self, array: np.ndarray, batch_first: Optional[bool] = None) -> np.ndarray:
        """(B, T, ·) <-> (T, B, ·) with batch_first (the layer's when None); a view, no copy."""
        return array.swapaxes(0, 1) if (self.batch_first if batch_first is None else batch_first) else array

    def state_shapes(self, B: int) -> list[tuple[str, tuple[int, int, int]]]:
        """[(part name, shape)] of the state for a batch of B: one per part of the cell's state
        ((h,) or (h, c)), each (num_layers * D, B, ·)."""
        rows = self.num_layers * self.num_directions
        return [(part, (rows, B, size)) for part, size in self.cell.state_sizes(self.hidden_size, self._options).items()]

    def _state_legend(self, part: str) -> str:
        size = "proj_size" if part == "h" and self.output_size != self.hidden_size else "H"
        return f"(num_layers * num_directions, B, {size})"

    def _read_state(self, state: StateLike, name: str, B: int, allow_none: bool) -> list[Optional[np.ndarray]]:
        """The state argument -> a list of arrays (or None) in the layer's dtype, one per part."""
        shapes = self.state_shapes(B)
        if state is None:
            return [None] * len(shapes)
        if len(shapes) > 1:
            if not isinstance(state, (tuple, list)) or len(state) != len(shapes):
                got = (f"{type(state).__name__} of length {len(state)}" if isinstance(state, (tuple, list))
                       else type(state).__name__)
                parts = " and ".join(f"{part} of shape {self._state_legend(part)} = {shape}" for part, shape in shapes)
                raise TypeError(f"{name}: expected a tuple ({', '.join(p for p, _ in shapes)}) of {_WORDS.get(len(shapes), len(shapes))} arrays, "
                                f"{parts}, or None; got {got}")
            entries = [(f"{name}[{k}] ({part})", part, shape, value)
                     for k, ((part, shape), value) in enumerate(zip(shapes, state))]
        else:
            if isinstance(state, (tuple, list)):
                raise TypeError(f"{name}: expected one array h of shape (num_layers * num_directions, B, H) = "
                                f"{shapes[0][1]}, or None; got {type(state).__name__} ({self.cell.name} has no cell "
                                "state)")
            entries = [(name, "h", shapes[0][1], state)]
        out: list[Optional[np.ndarray]] = []
        for label, part, shape, value in entries:
            if value is None and allow_none:
                out.append(None)
                continue
            array = as_real_array(value, label, self.dtype)
            check_shape(array, label, shape, self._state_legend(part))
            out.append(np.ascontiguousarray(array))
        return out

    def _pack_state(self, parts: list[np.ndarray]) -> LayerState:
        """A list with one array per part -> the state as users see it: a tuple (h, c), or h alone."""
        return tuple(parts) if len(parts) > 1 else parts[0]

    # -- one layer (both its directions), over the compiled core -----------------------------------

    def _layer_weights(self, k: int, source: Optional[Mapping[str, np.ndarray]] = None) -> _Weights:
        """{base name: weight} of layer k: its array for one direction, the pair (forward, reverse)
        for two (the core's bidirectional call). `source` defaults to the parameters."""
        source = self._parameters if source is None else source
        weights: _Weights = {}
        for name in cells.WEIGHT_NAMES:
            values = [source.get(name + suffix) for suffix in self._suffixes(k)]
            if values[0] is not None:
                weights[name] = values[0] if len(values) == 1 else tuple(values)
        return weights

    def _forward_layer(self, x: np.ndarray, k: int, state0: list[Optional[np.ndarray]],
                       lengths: Optional[NDArray[np.int64]], masks: _Masks
                       ) -> tuple[np.ndarray, list[np.ndarray], Optional[np.ndarray]]:
        """-> (y (T, B, D * H_out), state_n (a list, one array per part), workspace or None) of
        layer k, both directions in one core call; states (B, ·) for one direction, (2, B, ·) for two;
        masks: the variants' masks of this call (cells.CellKind.draw_masks)."""
        out: tuple[np.ndarray, list[np.ndarray], Optional[np.ndarray]] = self.cell.forward(
            x, self._layer_weights(k), state0, self._options, lengths=lengths, training=self.training,
            bidirectional=self.bidirectional, masks=masks)
        return out

    def _backward_layer(self, dy: Optional[np.ndarray], dstate_n: list[Optional[np.ndarray]], saved: _LayerSaved,
                        lengths: Optional[NDArray[np.int64]], options: dict[str, Any]
                        ) -> tuple[np.ndarray, list[np.ndarray], dict[str, np.ndarray]]:
        """-> (dx, dstate0 (a list, one per part), {parameter name: gradient}) of one layer, both
        directions in one core call (dy (T, B, D * H_out), states as in _forward_layer; options:
        those of the forward)."""
        x, ws, weights, k, masks = saved
        dx: np.ndarray
        dstate0: list[np.ndarray]
        named: dict[str, np.ndarray]
        dx, dstate0, named = self.cell.backward(dy, dstate_n, x, self._layer_weights(k, weights), ws, options,
                                                lengths=lengths, bias=self.bias, bidirectional=self.bidirectional,
                                                masks=masks)
        grads: dict[str, np.ndarray] = {}
        for direction, suffix in enumerate(self._suffixes(k)):  # a leading axis of 2 for two directions
            for name, grad in named.items():
                grads[name + suffix] = grad[direction] if self.bidirectional else grad
        return dx, dstate0, grads

    def _layer_rows(self, parts: list[Optional[np.ndarray]], k: int) -> list[Optional[np.ndarray]]:
        """Layer k's rows of a state given as a list of parts (None or (num_layers * D, B, ·) each):
        (B, ·) for one direction, (D, B, ·) for two."""
        D = self.num_directions
        return [None if part is None else (part[k] if D == 1 else part[k * D:(k + 1) * D]) for part in parts]

    # -- forward and backward ---------------------------------------------------------------------

    def forward(self, x: ArrayLike, state: StateLike = None,
                lengths: Optional[ArrayLike] = None) -> tuple[np.ndarray, LayerState]:
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
        D = self.num_directions
        saved: list[_LayerSaved] = []
        masks: list[Optional[np.ndarray]] = []
        # per part, the (B, ·) rows of every layer and direction
        state_n: list[list[np.ndarray]] = [[] for _ in state0]
        for k in range(self.num_layers):
            # The masks of the variants (recurrent dropout, zoneout) for this call, from the masks' stream.
            cell_masks = self.cell.draw_masks(self._dropout_rng, self._options, T, B, D, self.hidden_size, self.dtype,
                                              self.training)
            # Both directions in one core call: y (T, B, D * H_out), the directions side by side.
            layer_output, layer_state, ws = self._forward_layer(layer_input, k, self._layer_rows(state0, k),
                                                                lengths, cell_masks)
            for rows, part in zip(state_n, layer_state):
                rows.extend(part.reshape(D, B, -1))
            if self.training:
                # The weights as they were: an update between forward and backward must not leak in.
                weights = {name + suffix: self._weights_at_forward(name + suffix)
                           for suffix in self._suffixes(k)
                           for name in cells.WEIGHT_NAMES if name + suffix in self._parameters}
                # backward reads only x's shape (the workspace holds the input, packed): a
                # zero-stride stand-in keeps that without keeping the layer's input alive.
                x_shape = np.broadcast_to(np.zeros((), self.dtype), layer_input.shape)
                saved.append((x_shape, ws, weights, k, cell_masks))
            if self.training and self.dropout > 0 and k < self.num_layers - 1:
                keep = self._dropout_rng.random(layer_output.shape) >= self.dropout
                mask = keep.astype(self.dtype) / self.dtype.type(1.0 - self.dropout)
                layer_output = layer_output * mask
                masks.append(mask)
            else:
                masks.append(None)
            layer_input = layer_output
        if self.training:
            self._saved = (saved, masks, lengths, T, B, dict(self._options), self.batch_first)
        return self._time_major(layer_input), self._pack_state([np.stack(rows) for rows in state_n])

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

    def backward(self, dy: Optional[ArrayLike], dstate: StateLike = None) -> tuple[np.ndarray, LayerState]:
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
        # The options and layout of that forward (setting an attribute in between changes the next forward)
        saved, masks, lengths, T, B, options, batch_first = self._saved
        d_output: Optional[np.ndarray] = None
        if dy is not None:
            dy_array = as_real_array(dy, "dy", self.dtype)
            width = self.num_directions * self.output_size
            y_shape = (B, T, width) if batch_first else (T, B, width)
            check_shape(dy_array, "dy", y_shape, "of y " + ("(B, T, H)" if batch_first else "(T, B, H)"))
            d_output = self._time_major(dy_array, batch_first)
        dstate_n = self._read_state(dstate, "dstate", B, allow_none=True)

        # From here on the forward's workspaces are this call's: each is dropped as soon as its layer
        # is done, so that its memory serves the layers below.
        self._saved = None
        D = self.num_directions
        # per part, per layer from the last one down: (D, B, ·) or (B, ·)
        dstate0: list[list[np.ndarray]] = [[] for _ in dstate_n]
        for k in reversed(range(self.num_layers)):
            mask = masks[k]
            if mask is not None:
                assert d_output is not None  # below the top layer: the dx of the layer above
                d_output = d_output * mask
            if d_output is not None:
                d_output = np.ascontiguousarray(d_output)
            # Both directions in one core call: it reads each direction's columns of dy and returns
            # dx with both directions' parts added. (saved.pop() is saved[k], dropped from the list.)
            d_output, layer_dstate0, layer_grads = self._backward_layer(
                d_output, self._layer_rows(dstate_n, k), saved.pop(), lengths, options)
            for per_layer, part in zip(dstate0, layer_dstate0):
                per_layer.append(part)
            for name, grad in layer_grads.items():
                self.grads[name] += grad
        assert d_output is not None  # num_layers >= 1: the first layer's dx

        def stack(parts: list[np.ndarray]) -> np.ndarray:
            stacked: np.ndarray = np.concatenate([p.reshape(D, B, -1) for p in parts])
            return stacked

        return (self._time_major(d_output, batch_first),
                self._pack_state([stack(per_layer[::-1]) for per_layer in dstate0]))


class LSTM(RNNBase):
    """Long short-term memory layers: a drop-in for ``torch.nn.LSTM`` with the same arguments.

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, proj_size=0, dtype=np.float32, seed=None, *, peephole=False,
    zoneout=(0.0, 0.0), recurrent_dropout=0.0)``. Parameters per layer k and direction:
    ``weight_ih_l{k}`` (4H, I_k), ``weight_hh_l{k}`` (4H, H_out), ``bias_ih_l{k}`` and
    ``bias_hh_l{k}`` (4H,), with a projection ``weight_hr_l{k}`` (proj_size, H), with peepholes
    ``weight_ch_l{k}`` (3, H); suffix ``_reverse`` for the backward direction; gates in PyTorch's
    order i, f, g, o. The state is (h, c) with h (num_layers * D, B, H_out) and c
    (num_layers * D, B, hidden_size), H_out = proj_size or hidden_size.

    The variants, which combine with each other and with every other argument:

    - ``peephole=True``: ONNX's peephole connections. i and f see P_i ⊙ c_{t-1} and
      P_f ⊙ c_{t-1}, o sees P_o ⊙ c̃_t (the cell's new value); ``weight_ch_l{k}`` holds the rows
      P_i, P_f, P_o.
    - ``zoneout=(z_c, z_h)`` (or one number for both; Krueger et al. 2016): when training, each
      unit of c and of h keeps its previous value with probability z at every step,
      c_t = z^c_t ⊙ c_{t-1} + (1 − z^c_t) ⊙ c̃_t and h_t = z^h_t ⊙ h_{t-1} + (1 − z^h_t) ⊙ h̃_t
      with masks z^c, z^h of 0 and 1; in inference the masks are replaced by their expectation z.
    - ``recurrent_dropout=p`` (Gal and Ghahramani 2016): when training, the recurrent products
      read h̄_{t-1} = keep ⊙ h_{t-1}, one mask keep of 0 and 1 / (1 − p) per sequence and layer
      direction, the same at every step; inference is the plain cell's.

    The masks come from the layer's own generator (``seed``; ``rng_state`` / ``set_rng_state``), so
    training is reproducible, and backward runs through the same masks as its forward.
    """

    cell = cells.LSTM
    # The kind's options, set as attributes by RNNBase.__init__ (checked: zoneout always a pair).
    proj_size: int
    peephole: bool
    layer_norm: bool
    zoneout: tuple[float, float]
    recurrent_dropout: float

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 dtype: DTypeLike = np.float32, seed: Optional[int] = None, *, peephole: bool = False,
                 layer_norm: bool = False, zoneout: Union[float, Sequence[float]] = (0.0, 0.0),
                 recurrent_dropout: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, seed,
                         proj_size=proj_size, peephole=peephole, layer_norm=layer_norm, zoneout=zoneout,
                         recurrent_dropout=recurrent_dropout)

    def stream(self, batch_size: int = 1, state: Optional[tuple[ArrayLike, ArrayLike]] = None) -> Stream:
        """A :class:`lstm_ext.stream.Stream` of this layer's current weights: ``step(x_t)`` with
        x_t (batch_size, input_size) returns h_t (batch_size, hidden_size) of the last layer and
        keeps (h, c), each (num_layers, batch_size, hidden_size), for the next step."""
        return Stream(self, batch_size, state)


class GRU(RNNBase):
    """Gated recurrent unit layers: a drop-in for ``torch.nn.GRU`` (gates r, z, n; PyTorch's
    formulation n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h).

    Arguments as LSTM's without proj_size and its variants but ``layer_norm``; weights (3H, ·),
    biases (3H,); the state is one array h (num_layers * D, B, H).

    ``layer_norm=True`` (Ba, Kiros and Hinton 2016) normalizes the input and the recurrent parts
    of the pre-activations, each over its 3H values, before the biases:
    gx = LN_ih(W_ih x_t) + b_ih, gh = LN_hh(W_hh h_{t-1}) + b_hh, then r, z, n as above with gh_n
    in place of W_hn h + b_hn; parameters ``ln_ih_weight_l{k}``, ``ln_ih_bias_l{k}``,
    ``ln_hh_weight_l{k}``, ``ln_hh_bias_l{k}`` (3H,), the gains starting at 1, the biases at 0.
    """

    cell = cells.GRU
    layer_norm: bool  # the kind's option, set as an attribute by RNNBase.__init__

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype: DTypeLike = np.float32, seed: Optional[int] = None, *, layer_norm: bool = False) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, seed,
                         layer_norm=layer_norm)


class RNN(RNNBase):
    """Elman RNN layers, h' = act(W_ih x + b_ih + W_hh h + b_hh): a drop-in for ``torch.nn.RNN``.

    Arguments as GRU's plus ``nonlinearity='tanh' | 'relu'``; weights (H, ·), biases (H,).
    """

    cell = cells.RNN
    nonlinearity: str  # the kind's option, set as an attribute by RNNBase.__init__

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype: DTypeLike = np.float32, seed: Optional[int] = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, seed,
                         nonlinearity=nonlinearity)
