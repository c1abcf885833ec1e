"""Inference in int8 and with bfloat16 weights: ``quantize_dynamic(layer_or_model)`` returns an
inference-only copy of an LSTM, GRU or RNN layer (or of a Sequential) whose weight matrices are
int8 (one scale per row, packed once in the kernels' layout) and whose activations are quantized
per row at every call, as ``torch.ao.quantization.quantize_dynamic`` does for ``nn.LSTM``; or, with
``dtype="bfloat16"``, whose recurrent matrices are stored in bf16 and widened to float32
in registers. The scheme, its rounding and its bounds: ``lstm_ext.quantized_reference``, the
textbook version the compiled path is tested against.

A quantized layer or model runs its forward (stacked, bidirectional, lengths, batch_first, initial
states; the LSTM's projection, peepholes and zoneout's expectation), steps a stream, saves and loads
(``save``, ``lstm_ext.load``), and exports to ONNX (``lstm_ext.export_onnx``, int8); it refuses
``backward``, ``fit`` and ``train()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import as_real_array, check_positive_int, read_lengths
from ._typing import LayerState
from . import _core, training
from . import checkpoint as ckpt
from ._typing import Arrays, Header, PathLike
from .cells import DirectionForward
from .layers import RNNBase, StateLike
from .model import Sequential, run_layers
from .nn import LAYER_TYPES
from .quantized_reference import quantize_weight_rows, to_bfloat16

__all__ = ["Int8Weight", "QuantizedLayer", "QuantizedSequential", "QuantizedStream", "pack_int8", "quantize_dynamic"]

# The weight matrices that are quantized; the rest (biases, peepholes) stays float32.
_QUANTIZED = ("weight_ih", "weight_hh", "weight_hr")

# The kernels' layout (cpp/rnn/types.hpp): panels of 16 rows, groups of 4 inputs.
_PANEL_ROWS, _GROUP = 16, 4


@dataclass(frozen=True)
class Int8Weight:
    """A weight matrix W (N, K) quantized by rows (``quantized_reference.quantize_weight_rows``),
    N = blocks · rows (a block: one gate's rows), packed once in the layout the compiled kernels
    read at every level: ``panels[b, p, g, j, i] = q[b · rows + 16p + j, 4g + i]``, shape (blocks,
    ⌈rows/16⌉, ⌈K/4⌉, 16, 4), zeros past the ends; ``scale`` (N,) float32; ``sum`` (N,) int32, the
    rows' sums of q (the VNNI kernels add 128 to the activations and take 128 · sum off)."""

    panels: NDArray[np.int8]
    scale: NDArray[np.float32]
    sum: NDArray[np.int32]
    inputs: int  # K

    @property
    def parts(self) -> tuple[NDArray[np.int8], NDArray[np.float32], NDArray[np.int32]]:
        """(panels, scale, sum): what the core's int8 forwards take for one matrix."""
        return self.panels, self.scale, self.sum

    @property
    def nbytes(self) -> int:
        return int(self.panels.nbytes + self.scale.nbytes + self.sum.nbytes)

    def rows(self) -> NDArray[np.int8]:
        """q (N, K), unpacked."""
        blocks, panels, groups = self.panels.shape[:3]
        rows = len(self.scale) // blocks
        unpacked = self.panels.transpose(0, 1, 3, 2, 4).reshape(blocks, panels * _PANEL_ROWS, groups * _GROUP)
        return np.ascontiguousarray(unpacked[:, :rows, :self.inputs].reshape(blocks * rows, self.inputs))


def pack_int8(q: NDArray[np.int8], scale: NDArray[np.float32], blocks: int) -> Int8Weight:
    """q (N, K) int8 in [-127, 127] and its row scales (N,), N = blocks · rows, packed (Int8Weight)."""
    q = np.asarray(q)
    if q.dtype != np.int8 or q.ndim != 2 or q.shape[0] % blocks or len(scale) != q.shape[0]:
        raise ValueError(f"pack_int8: expected q int8 (blocks * rows, K) with blocks = {blocks} and scale (N,), got "
                         f"q {q.dtype} {q.shape} and scale of length {len(scale)}")
    if q.size and int(q.min()) < -127:
        raise ValueError("pack_int8: q holds -128; the kernels' sums are exact for q in [-127, 127]")
    N, K = q.shape
    rows = N // blocks
    panels, groups = -(-rows // _PANEL_ROWS), -(-K // _GROUP)
    padded = np.zeros((blocks, panels * _PANEL_ROWS, groups * _GROUP), np.int8)
    padded[:, :rows, :K] = q.reshape(blocks, rows, K)
    packed = np.ascontiguousarray(padded.reshape(blocks, panels, _PANEL_ROWS, groups, _GROUP).transpose(0, 1, 3, 2, 4))
    return Int8Weight(packed, np.ascontiguousarray(scale, np.float32), q.sum(axis=1, dtype=np.int32), K)


def _bfloat16_bits(w: np.ndarray) -> NDArray[np.uint16]:
    """The bfloat16 bits (uint16) of w rounded to bfloat16 (quantized_reference.to_bfloat16)."""
    rounded = to_bfloat16(np.asarray(w, np.float32))
    bits: NDArray[np.uint16] = (np.ascontiguousarray(rounded).view(np.uint32) >> 16).astype(np.uint16)
    return bits


class QuantizedLayer:
    """A layer's inference in int8 or with bfloat16 weights, made by :func:`quantize_dynamic`: the
    same call as the layer's forward (``layer(x, state=None, lengths=None) -> (y, state_n)``), in
    float32."""

    def __init__(self, layer: RNNBase, dtype: str = "int8") -> None:
        self._describe(layer, dtype)
        for name, value in layer.state_dict().items():
            base = name.split("_l")[0]
            if dtype == "int8" and base in _QUANTIZED:
                q, scale = quantize_weight_rows(np.asarray(value, np.float64))
                self.quantized[name] = pack_int8(q, scale, self._blocks(base))
            elif dtype == "bfloat16" and base in ("weight_hh", "weight_hr"):
                self.bf16[name] = _core.pack_bf16(_bfloat16_bits(value), self._blocks(base))
            elif dtype == "bfloat16" and base == "weight_ih":
                self.floats[name] = to_bfloat16(np.asarray(value, np.float32))
            else:
                self.floats[name] = np.ascontiguousarray(value, np.float32)

    def _describe(self, layer: RNNBase, dtype: str) -> None:
        """What the layer is (its settings and sizes; not its float weights, which this copy does
        not keep), checked for the dtype; the weights' dicts empty."""
        if dtype not in ("int8", "bfloat16"):
            raise ValueError(f"dtype: expected 'int8' or 'bfloat16', got {dtype!r}")
        if layer.options.get("layer_norm"):
            raise ValueError(f"quantize_dynamic: layer_norm=True has no {dtype} form (its statistics need the float "
                             "products)")
        self.dtype_name = dtype
        self.layer_type, self.layer_config, self._layer_repr = type(layer).__name__, layer.config(), repr(layer)
        self.num_layers, self.bidirectional, self.batch_first = layer.num_layers, layer.bidirectional, layer.batch_first
        self.num_directions = layer.num_directions
        self.hidden_size, self.output_size, self.input_size = layer.hidden_size, layer.output_size, layer.input_size
        self.cell, self.options = layer.cell, layer.options
        self._options = self.options  # (the name RNNBase's state checks read)
        self.dtype = np.dtype(np.float32)  # its inputs, outputs and states
        # Per parameter: the int8 matrices (Int8Weight), bfloat16 W_hh and W_hr packed for this
        # process's kernel level (_core.pack_bf16; W_ih as float32 of its bfloat16 values), and
        # float32 arrays for the rest.
        self.quantized: dict[str, Int8Weight] = {}
        self.bf16: dict[str, NDArray[np.uint16]] = {}
        self.floats: dict[str, NDArray[np.float32]] = {}
        self._forwards: Optional[dict[tuple[int, int], DirectionForward]] = None

    def _direction_forward(self, k: int, direction: int) -> DirectionForward:
        """Layer k's direction with its weights bound (CellKind.bind_int8, bind_bf16), made at the
        first call (the weights do not change after construction): a call of a few steps is not
        spent sorting names and reading options."""
        if self._forwards is None:
            self._forwards = {}
            bind = self.cell.bind_int8 if self.dtype_name == "int8" else self.cell.bind_bf16
            for kk in range(self.num_layers):
                for d, suffix in enumerate([f"_l{kk}", f"_l{kk}_reverse"][:self.num_directions]):
                    # by base name ("_l0" ends no reverse name: "_l0_reverse" does)
                    matrices = {name[:-len(suffix)]: value for name, value in {**self.quantized, **self.bf16}.items()
                                if name.endswith(suffix)}
                    floats = {name[:-len(suffix)]: value for name, value in self.floats.items()
                              if name.endswith(suffix)}
                    self._forwards[kk, d] = bind(matrices, floats, self.options)
        return self._forwards[k, direction]

    def _blocks(self, base: str) -> int:
        """The blocks of rows (one per gate) of weight `base`."""
        return 1 if base == "weight_hr" else self.cell.num_gates

    # The state's checks and form are the float layer's: RNNBase's methods, which read only the
    # sizes, the options and the cell that this copy has too.
    state_shapes = RNNBase.state_shapes
    _state_legend = RNNBase._state_legend

    def _read_state(self, state: StateLike, name: str, B: int, allow_none: bool) -> list[Optional[np.ndarray]]:
        return RNNBase._read_state(cast(RNNBase, self), state, name, B, allow_none)

    def _pack_state(self, parts: list[np.ndarray]) -> LayerState:
        return RNNBase._pack_state(cast(RNNBase, self), parts)

    def __repr__(self) -> str:
        return f"Quantized{self.cell.name}({self.dtype_name}, {self._layer_repr})"

    def save(self, path: PathLike) -> None:
        """Write this quantized layer (its settings, the int8 or bfloat16 weights as they are, the
        rest in float32) to one file, atomically; ``lstm_ext.load`` reads it back."""
        _write_quantized(path, [self], self.dtype_name, alone=True)

    def weight_bytes(self) -> int:
        """Bytes of the weights this copy holds (int8 matrices and their scales, or bf16 matrices, and
        float32 arrays)."""
        return int(sum(w.nbytes for w in self.quantized.values())
                   + sum(v.nbytes for v in self.bf16.values()) + sum(v.nbytes for v in self.floats.values()))

    def __call__(self, x: ArrayLike, state: StateLike = None,
                 lengths: Optional[ArrayLike] = None) -> tuple[np.ndarray, LayerState]:
        return self.forward(x, state, lengths)

    def forward(self, x: ArrayLike, state: StateLike = None,
                lengths: Optional[ArrayLike] = None) -> tuple[np.ndarray, LayerState]:
        """The layer's forward in int8 (see the class): x (T, B, I) or batch-first (B, T, I)."""
        layer = self
        x_array = as_real_array(x, "x", np.float32)
        legend = "(B, T, I)" if self.batch_first else "(T, B, I)"
        if x_array.ndim != 3:
            raise ValueError(f"x: expected a 3-D array {legend} with I = {self.input_size}, got shape {x_array.shape}")
        x_tm = x_array.swapaxes(0, 1) if self.batch_first else x_array
        T, B, I = x_tm.shape
        if T < 1 or B < 1 or I != self.input_size:
            raise ValueError(f"x: expected shape {legend} with T >= 1, B >= 1 and I = {self.input_size}, "
                             f"got {x_array.shape}")
        # [h0] or [h0, c0], each or None (a call without state or lengths reads nothing more)
        state0 = ([None] * len(self.cell.state) if state is None
                  else layer._read_state(state, "state", B, allow_none=False))
        lengths_checked = None if lengths is None else read_lengths(lengths, T, B)
        D = 2 if self.bidirectional else 1
        layer_input = np.ascontiguousarray(x_tm)
        state_n: list[list[np.ndarray]] = [[] for _ in state0]  # per part, every layer's and direction's rows
        for k in range(self.num_layers):
            outputs = []
            for direction in range(D):
                row = k * D + direction
                rows = [None if part is None else part[row] for part in state0]
                y, parts = self._direction_forward(k, direction)(layer_input, rows, lengths_checked, direction == 1)
                outputs.append(y)
                for final_rows, part in zip(state_n, parts):
                    final_rows.append(part)
            layer_input = outputs[0] if D == 1 else np.concatenate(outputs, axis=2)
        y_out = layer_input.swapaxes(0, 1) if self.batch_first else layer_input
        # (one layer and direction: a view with the leading axis, not a copy)
        return y_out, layer._pack_state([rows[0][np.newaxis] if len(rows) == 1 else np.stack(rows) for rows in state_n])

    def backward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("backward: a quantized layer is for inference only (train the float layer, then "
                           "quantize_dynamic it again)")

    def stream(self, batch_size: int = 1, state: StateLike = None) -> QuantizedStream:
        """Step-by-step inference in this layer's precision: ``step(x_t)``, x_t (batch_size,
        input_size) -> the last layer's h_t, the state kept for the next step. A step is this
        layer's forward over one step: the same bits as the whole sequence (every scale is per row)."""
        return QuantizedStream(self, batch_size, state)


class QuantizedStream:
    """One sequence's state (per batch row) for a QuantizedLayer, stepped one time step at a time
    (QuantizedLayer.stream). Unidirectional layers only: a reverse direction needs the whole
    sequence."""

    def __init__(self, layer: QuantizedLayer, batch_size: int = 1, state: StateLike = None) -> None:
        if layer.bidirectional:
            raise ValueError("stream: a stream runs one direction; the layer is bidirectional")
        self.layer = layer
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.state: Optional[LayerState] = None  # None: zeros
        if state is not None:
            layer._read_state(state, "state", self.batch_size, allow_none=False)  # checked
            self.state = state  # type: ignore[assignment]

    def step(self, x: ArrayLike) -> np.ndarray:
        """One time step: x (batch_size, input_size) -> h of the last layer (batch_size, output size)."""
        x_array = as_real_array(x, "x", np.float32)
        if x_array.shape != (self.batch_size, self.layer.input_size):
            raise ValueError(f"x: expected shape (batch_size, input_size) = ({self.batch_size}, "
                             f"{self.layer.input_size}), got {x_array.shape}")
        y, self.state = self.layer.forward(x_array[None] if not self.layer.batch_first else x_array[:, None],
                                           self.state)
        return y[0] if not self.layer.batch_first else y[:, 0]

    __call__ = step

    def reset(self) -> None:
        """Zero state, as at the start of a sequence."""
        self.state = None


class QuantizedSequential:
    """A Sequential's inference with its recurrent layers in int8 (QuantizedLayer), made by
    :func:`quantize_dynamic`: ``forward(x, lengths=None, states=None)``, ``predict``; the other
    layers are float32 copies, in inference mode."""

    def __init__(self, model: Sequential, dtype: str = "int8") -> None:
        self.layers: list[Any] = []
        for layer in model.layers:
            if isinstance(layer, RNNBase):
                self.layers.append(QuantizedLayer(layer, dtype))
            else:
                config = layer.config()
                copy = type(layer)(**({**config, "dtype": "float32"} if "dtype" in config else config))
                copy.load_state_dict(layer.state_dict())  # (float64 weights rounded to float32)
                self.layers.append(copy.eval())
        self.dtype = np.dtype(np.float32)
        self.dtype_name = dtype
        self.training = False
        self.states: list[LayerState] = []  # each recurrent layer's final state after the last forward

    def save(self, path: PathLike) -> None:
        """Write this quantized model (its layers' settings, the int8 or bfloat16 weights as they
        are, the rest in float32) to one file, atomically; ``lstm_ext.load`` reads it back."""
        _write_quantized(path, self.layers, self.dtype_name, alone=False)

    def weight_bytes(self) -> int:
        """Bytes of the weights this model holds (see QuantizedLayer.weight_bytes)."""
        return int(sum(layer.weight_bytes() if isinstance(layer, QuantizedLayer)
                       else sum(v.nbytes for v in layer.state_dict().values()) for layer in self.layers))

    def __repr__(self) -> str:
        inner = ",\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"QuantizedSequential(\n{inner}\n)"

    def train(self, mode: bool = True) -> QuantizedSequential:
        if mode:
            raise RuntimeError("train: a quantized model is for inference only (train the float model, then "
                               "quantize_dynamic it again)")
        return self

    def eval(self) -> QuantizedSequential:
        return self

    def forward(self, x: ArrayLike, lengths: Optional[ArrayLike] = None,
                states: Optional[Sequence[Optional[LayerState]]] = None) -> np.ndarray:
        """As Sequential.forward, in inference: x (B, T, features) or tokens -> the output."""
        y, self.states = run_layers(self.layers, x, lengths, states, lambda layer: isinstance(layer, QuantizedLayer))
        return y

    __call__ = forward

    def predict(self, X: ArrayLike, lengths: Optional[ArrayLike] = None, batch_size: int = 256) -> np.ndarray:
        """As Sequential.predict: the outputs for X, batch by batch."""
        return training.predict(self, X, lengths, batch_size)  # type: ignore[arg-type]  # (duck-typed model)

    def backward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("backward: a quantized model is for inference only (train the float model, then "
                           "quantize_dynamic it again)")

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("fit: a quantized model is for inference only (train the float model, then "
                           "quantize_dynamic it again)")


def quantize_dynamic(model_or_layer: Union[RNNBase, Sequential],
                     dtype: str = "int8") -> Union[QuantizedLayer, QuantizedSequential]:
    """An inference-only copy of an LSTM, GRU or RNN layer, or of a Sequential model, whose
    recurrent weight matrices are int8 (one scale per row) and whose activations are quantized per
    row at every call (PyTorch's name and meaning); the original is untouched."""
    if dtype not in ("int8", "bfloat16"):
        raise ValueError(f"dtype: expected 'int8' or 'bfloat16', got {dtype!r}")
    if isinstance(model_or_layer, Sequential):
        return QuantizedSequential(model_or_layer, dtype)
    if not isinstance(model_or_layer, RNNBase):
        raise TypeError(f"model_or_layer: expected an lstm_ext LSTM, GRU, RNN or Sequential, got "
                        f"{type(model_or_layer).__name__}")
    return QuantizedLayer(model_or_layer, dtype)


# -- the file --------------------------------------------------------------------------------------
# A checkpoint (lstm_ext.checkpoint's format) whose header has "quantized": {"dtype", "layer"} next
# to the layers' specs, and whose arrays are, for layer i's parameter `name`: "int8:i.name" (q
# (N, K), unpacked: the file does not depend on the kernels' layout) with "scale:i.name" (N,);
# "bf16:i.name" (the bfloat16 bits (N, K), uint16); "param:i.name" float32 for the rest.

def _unpack_bf16(packed: np.ndarray, rows: int) -> NDArray[np.uint16]:
    """The bits (blocks · rows, K) of _core.pack_bf16's (blocks, panels, K, lanes) layout."""
    blocks, panels, K, lanes = packed.shape
    bits = packed.transpose(0, 1, 3, 2).reshape(blocks, panels * lanes, K)[:, :rows]
    return np.ascontiguousarray(bits.reshape(blocks * rows, K))


def _write_quantized(path: PathLike, layers: Sequence[Any], dtype: str, alone: bool) -> None:
    specs, arrays = [], {}
    for i, layer in enumerate(layers):
        if isinstance(layer, QuantizedLayer):
            specs.append({"type": layer.layer_type, "config": layer.layer_config})
            for name, w in layer.quantized.items():
                arrays[f"int8:{i}.{name}"], arrays[f"scale:{i}.{name}"] = w.rows(), w.scale
            for name, packed in layer.bf16.items():
                rows = layer.hidden_size if name.startswith("weight_hh") else layer.output_size
                arrays[f"bf16:{i}.{name}"] = _unpack_bf16(packed, rows)
            arrays.update({f"param:{i}.{name}": value for name, value in layer.floats.items()})
        else:
            specs.append({"type": type(layer).__name__, "config": layer.config()})
            arrays.update({f"param:{i}.{name}": value for name, value in layer.state_dict().items()})
    ckpt.write_checkpoint(path, {"model": specs, "quantized": {"dtype": dtype, "layer": alone}}, arrays)


def read_quantized(path: PathLike, header: Header,
                   arrays: Arrays) -> Union[QuantizedLayer, QuantizedSequential]:
    """The quantized layer or model of a checkpoint read by checkpoint.read_checkpoint (its header
    has "quantized"): every array checked for its name, dtype, shape and range before any layer is
    built, as checkpoint.check_parameters does for a float model."""
    settings = header.get("quantized")
    if (not isinstance(settings, dict) or settings.get("dtype") not in ("int8", "bfloat16")
            or not isinstance(settings.get("layer"), bool)):
        raise ckpt.CheckpointError(f"{path}: quantized: expected an object with dtype 'int8' or 'bfloat16' and layer "
                                   f"true or false, got {settings!r}")
    dtype, alone = settings["dtype"], settings["layer"]
    specs = ckpt.check_layer_specs(path, header, arrays)
    if alone and (len(specs) != 1 or not issubclass(LAYER_TYPES[specs[0]["type"]], RNNBase)):
        raise ckpt.CheckpointError(f"{path}: a quantized layer's file describes {len(specs)} layers")
    expected: dict[str, tuple[tuple[int, ...], Any]] = {}  # array name -> (shape, dtype)
    for index, spec in enumerate(specs):
        kind = LAYER_TYPES[spec["type"]]
        for name, shape in ckpt.layer_parameter_shapes(path, index, spec).items():
            base = name.split("_l")[0]
            recurrent = issubclass(kind, RNNBase)
            if recurrent and dtype == "int8" and base in _QUANTIZED:
                expected[f"int8:{index}.{name}"] = (shape, np.int8)
                expected[f"scale:{index}.{name}"] = (shape[:1], np.float32)
            elif recurrent and dtype == "bfloat16" and base in ("weight_hh", "weight_hr"):
                expected[f"bf16:{index}.{name}"] = (shape, np.uint16)
            else:
                expected[f"param:{index}.{name}"] = (shape, np.float32)
    missing = [name for name in expected if name not in arrays]
    extra = [name for name in arrays if name not in expected]
    wrong = [f"{name} {arrays[name].dtype} {arrays[name].shape} instead of {np.dtype(kind).name} {shape}"
             for name, (shape, kind) in expected.items()
             if name in arrays and (arrays[name].shape != shape or arrays[name].dtype != kind)]
    if missing or extra or wrong:
        raise ckpt.CheckpointError(f"{path}: the arrays do not match the quantized layers the header describes "
                                   f"(missing: {missing}, unexpected: {extra}, wrong: {wrong})")
    for name, value in arrays.items():
        if name.startswith("int8:") and value.size and int(value.min()) < -127:
            raise ckpt.CheckpointError(f"{path}: {name} holds -128; int8 weights are in [-127, 127]")
        if name.startswith("scale:") and not (np.all(np.isfinite(value)) and np.all(value >= 0)):
            raise ckpt.CheckpointError(f"{path}: {name} holds a scale that is negative or not finite")
    layers: list[Any] = []
    with ckpt.contents_of(path):
        for index, spec in enumerate(specs):
            kind = LAYER_TYPES[spec["type"]]
            # (part, parameter name, array) of this layer's arrays: part "int8", "scale", "bf16", "param"
            mine = [(part, rest[len(f"{index}."):], value) for part, rest, value in
                    ((name.split(":", 1)[0], name.split(":", 1)[1], value) for name, value in arrays.items())
                    if rest.startswith(f"{index}.")]
            if not issubclass(kind, RNNBase):
                layer = kind(**spec["config"])
                layer.load_state_dict({name: value for _, name, value in mine})
                layers.append(layer.eval())
                continue
            described = QuantizedLayer.__new__(QuantizedLayer)
            described._describe(kind(**spec["config"]), dtype)  # (the float layer's weights are dropped)
            for part, name, value in mine:
                blocks = described._blocks(name.split("_l")[0])
                if part == "int8":
                    described.quantized[name] = pack_int8(value, arrays[f"scale:{index}.{name}"], blocks)
                elif part == "bf16":
                    described.bf16[name] = _core.pack_bf16(np.ascontiguousarray(value), blocks)
                elif part == "param":
                    described.floats[name] = np.ascontiguousarray(value, np.float32)
            layers.append(described)
    if alone:
        return cast(QuantizedLayer, layers[0])
    model = QuantizedSequential.__new__(QuantizedSequential)
    model.layers, model.dtype, model.dtype_name, model.training, model.states = layers, np.dtype(np.float32), dtype, False, []
    return model
