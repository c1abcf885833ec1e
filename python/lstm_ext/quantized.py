"""Inference in int8: ``quantize_dynamic(layer)`` returns an inference-only copy of an LSTM, GRU or
RNN whose weight matrices are int8 (one scale per row) and whose activations are quantized per row
at every call, as ``torch.ao.quantization.quantize_dynamic`` does for ``nn.LSTM`` (issue 28). The
scheme, its rounding and its bounds: ``lstm_ext.quantized_reference``, the textbook version the
compiled path is tested against.

Work in progress: layers (stacked, bidirectional, lengths, batch_first, initial states; the LSTM's
projection, peepholes and zoneout's expectation) in int8. Not yet: bfloat16, models, the stream,
save and load, ONNX export.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import as_real_array, check_positive_int, read_lengths
from ._typing import LayerState
from . import _core, training
from .layers import RNNBase, StateLike
from .model import Sequential
from .nn import LastStep
from .quantized_reference import quantize_weight_rows, to_bfloat16

__all__ = ["QuantizedLayer", "QuantizedSequential", "QuantizedStream", "quantize_dynamic"]

# The weight matrices that are quantized; the rest (biases, peepholes) stays float32.
_QUANTIZED = ("weight_ih", "weight_hh", "weight_hr")


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
        if layer.options.get("layer_norm"):
            raise ValueError(f"quantize_dynamic: layer_norm=True has no {dtype} form (its statistics need the float "
                             "products)")
        if dtype == "bfloat16" and layer.cell.forward_bf16 is None:
            raise ValueError(f"quantize_dynamic: bfloat16 runs LSTM layers for now, got a {layer.cell.name}")
        self.dtype_name = dtype
        self.layer_config = layer.config()
        self.num_layers, self.bidirectional, self.batch_first = layer.num_layers, layer.bidirectional, layer.batch_first
        self.hidden_size, self.output_size, self.input_size = layer.hidden_size, layer.output_size, layer.input_size
        self.cell, self.options = layer.cell, layer.options
        self._reference_layer = layer  # its state shapes and checks (its weights are not read again)
        # Per parameter: int8 q and float32 scales for the matrices (bfloat16: the bits of W_hh and
        # W_hr, and W_ih as float32 of its bfloat16 values), float32 arrays for the rest.
        self.quantized: dict[str, tuple[NDArray[np.int8], NDArray[np.float32]]] = {}
        self.bf16: dict[str, NDArray[np.uint16]] = {}
        self.floats: dict[str, NDArray[np.float32]] = {}
        for name, value in layer.state_dict().items():
            base = name.split("_l")[0]
            if dtype == "int8" and base in _QUANTIZED:
                self.quantized[name] = quantize_weight_rows(np.asarray(value, np.float64))
            elif dtype == "bfloat16" and base in ("weight_hh", "weight_hr"):
                # packed once, for this process's kernel level (never saved): W_hh by gate blocks
                blocks = self.cell.num_gates if base == "weight_hh" else 1
                self.bf16[name] = _core.pack_bf16(_bfloat16_bits(value), blocks)
            elif dtype == "bfloat16" and base == "weight_ih":
                self.floats[name] = to_bfloat16(np.asarray(value, np.float32))
            else:
                self.floats[name] = np.ascontiguousarray(value, np.float32)

    def __repr__(self) -> str:
        return f"Quantized{self.cell.name}({self.dtype_name}, {self._reference_layer!r})"

    def weight_bytes(self) -> int:
        """Bytes of the weights this copy holds (int8 matrices and their scales, or bf16 matrices, and
        float32 arrays)."""
        return int(sum(q.nbytes + s.nbytes for q, s in self.quantized.values())
                   + sum(v.nbytes for v in self.bf16.values()) + sum(v.nbytes for v in self.floats.values()))

    def __call__(self, x: ArrayLike, state: StateLike = None,
                 lengths: Optional[ArrayLike] = None) -> tuple[np.ndarray, LayerState]:
        return self.forward(x, state, lengths)

    def forward(self, x: ArrayLike, state: StateLike = None,
                lengths: Optional[ArrayLike] = None) -> tuple[np.ndarray, LayerState]:
        """The layer's forward in int8 (see the class): x (T, B, I) or batch-first (B, T, I)."""
        layer = self._reference_layer
        x_array = as_real_array(x, "x", np.float32)
        legend = "(B, T, I)" if self.batch_first else "(T, B, I)"
        if x_array.ndim != 3:
            raise ValueError(f"x: expected a 3-D array {legend} with I = {self.input_size}, got shape {x_array.shape}")
        x_tm = x_array.swapaxes(0, 1) if self.batch_first else x_array
        T, B, I = x_tm.shape
        if T < 1 or B < 1 or I != self.input_size:
            raise ValueError(f"x: expected shape {legend} with T >= 1, B >= 1 and I = {self.input_size}, "
                             f"got {x_array.shape}")
        state0 = layer._read_state(state, "state", B, allow_none=False)  # [h0] or [h0, c0], each or None
        lengths_checked = read_lengths(lengths, T, B)
        D = 2 if self.bidirectional else 1
        layer_input = np.ascontiguousarray(x_tm)
        state_n: list[list[np.ndarray]] = [[] for _ in state0]  # per part, every layer's and direction's rows
        for k in range(self.num_layers):
            outputs = []
            for direction, suffix in enumerate([f"_l{k}", f"_l{k}_reverse"][:D]):
                row = k * D + direction
                # this direction's weights by base name ("_l0" ends no reverse name: "_l0_reverse" does)
                floats = {name[:-len(suffix)]: value for name, value in self.floats.items() if name.endswith(suffix)}
                rows = [None if part is None else part[row] for part in state0]
                if self.dtype_name == "int8":
                    quantized = {name[:-len(suffix)]: value for name, value in self.quantized.items()
                                 if name.endswith(suffix)}
                    y, parts = self.cell.forward_int8(layer_input, quantized, floats, rows, self.options,
                                                      lengths_checked, direction == 1)
                else:
                    assert self.cell.forward_bf16 is not None  # (checked when built)
                    bf16 = {name[:-len(suffix)]: value for name, value in self.bf16.items() if name.endswith(suffix)}
                    y, parts = self.cell.forward_bf16(layer_input, bf16, floats, rows, self.options, lengths_checked,
                                                      direction == 1)
                outputs.append(y)
                for final_rows, part in zip(state_n, parts):
                    final_rows.append(part)
            layer_input = outputs[0] if D == 1 else np.concatenate(outputs, axis=2)
        y_out = layer_input.swapaxes(0, 1) if self.batch_first else layer_input
        return y_out, layer._pack_state([np.stack(rows) for rows in state_n])

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
            layer._reference_layer._read_state(state, "state", self.batch_size, allow_none=False)  # checked
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
        self.training = False
        self.states: list[LayerState] = []  # each recurrent layer's final state after the last forward

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
        recurrent = [layer for layer in self.layers if isinstance(layer, QuantizedLayer)]
        if states is not None and len(states) != len(recurrent):
            raise ValueError(f"states: expected one state per recurrent layer ({len(recurrent)}), got {len(states)}")
        out: Any = x
        finals: list[LayerState] = []
        for layer in self.layers:
            if isinstance(layer, QuantizedLayer):
                out, state = layer(out, None if states is None else states[len(finals)], lengths=lengths)
                finals.append(state)
            elif isinstance(layer, LastStep):
                out = layer(out, lengths)
            else:
                out = layer(out)
        self.states = finals
        y: np.ndarray = out
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
