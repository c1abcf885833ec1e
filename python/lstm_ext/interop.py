"""Weights in and out: PyTorch modules and Keras layer weights.

``from_torch(module)`` builds the lstm_ext layer matching a ``torch.nn.LSTM`` / ``GRU`` /
``RNN`` (same arguments, weights, dtype and train/eval mode), and ``to_torch(layer)`` (also
``layer.to_torch()``) builds the torch module from an lstm_ext layer. torch is imported only
inside these two functions: lstm_ext never needs it otherwise.

``from_keras(kind, weights)`` builds a layer from the weights of a Keras ``LSTM``, ``GRU`` or
``SimpleRNN`` (the list ``keras_layer.get_weights()`` returns). Keras stores kernels transposed
(kernel (I, G*H), recurrent_kernel (H, G*H)) with a single bias, and orders the GRU's gates
z, r, h; the importer transposes, reorders to PyTorch's r, z, n, and sets b_hh = 0 where Keras
has no recurrent bias.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import cells
from ._checks import as_real_array, check_shape
from .layers import GRU, LSTM, RNN, RNNBase

__all__ = ["from_torch", "to_torch", "from_keras"]

_NUMPY_DTYPE: dict[str, type[np.floating[Any]]] = {"torch.float32": np.float32, "torch.float64": np.float64}
_LAYERS: dict[cells.CellKind, type[RNNBase]] = {layer_class.cell: layer_class
                                                 for layer_class in (LSTM, GRU, RNN)}  # the layer of each cell kind


def _layer_class(module: Any) -> type[RNNBase]:  # module: a torch.nn.Module (torch is optional)
    import torch

    for kind, layer_class in _LAYERS.items():
        if isinstance(module, getattr(torch.nn, kind.name)):
            return layer_class
    raise TypeError(f"module: expected a torch.nn.LSTM, GRU or RNN, got {type(module).__name__}")


def from_torch(module: Any, *, dtype: DTypeLike = None, seed: Optional[int] = None) -> RNNBase:
    """The lstm_ext layer equal to a torch.nn.LSTM / GRU / RNN: same arguments, weights and mode.

    The dtype is the module's (float32 or float64) unless ``dtype`` is given; weights are
    copied (CPU or not), so later changes to either side do not affect the other.
    """
    layer_class = _layer_class(module)
    parameters = {name: value.detach().cpu() for name, value in module.state_dict().items()}
    if dtype is None:
        first = next(iter(parameters.values()))
        dtype = _NUMPY_DTYPE.get(str(first.dtype), np.float32)
    options = {option.name: getattr(module, option.name) for option in layer_class.cell.options
               if "torch" in option.supported_by}
    layer = layer_class(module.input_size, module.hidden_size, num_layers=module.num_layers, bias=module.bias,
                        batch_first=module.batch_first, dropout=float(module.dropout),
                        bidirectional=module.bidirectional, dtype=dtype, seed=seed, **options)
    layer.load_state_dict({name: value.double().numpy() for name, value in parameters.items()})
    return layer.train(module.training)


def to_torch(layer: RNNBase) -> Any:  # a torch.nn.Module
    """The torch.nn module equal to an lstm_ext layer: same arguments, weights, dtype and mode
    (``layer.to_torch()``)."""
    if not isinstance(layer, RNNBase):
        raise TypeError(f"layer: expected an lstm_ext LSTM, GRU or RNN, got {type(layer).__name__}")
    return layer.to_torch()


# -- Keras ----------------------------------------------------------------------------------------

def from_keras(kind: str, weights: Sequence[ArrayLike], *, reset_after: bool = True, nonlinearity: str = "tanh",
               batch_first: bool = True, dtype: DTypeLike = np.float32) -> RNNBase:
    """A one-layer lstm_ext LSTM / GRU / RNN from a Keras layer's weights.

    kind: 'lstm', 'gru' or 'simple_rnn'. weights: ``[kernel, recurrent_kernel, bias]`` as
    ``keras_layer.get_weights()`` returns them, or without the bias for ``use_bias=False``:
    kernel (I, G*H), recurrent_kernel (H, G*H), bias (G*H,), or (2, 3H) for a GRU with
    ``reset_after=True`` (row 0 the input bias, row 1 the recurrent bias). The Keras layer must
    use its default activations (tanh, and sigmoid for the gates); ``nonlinearity`` is the
    SimpleRNN's activation ('tanh' or 'relu'). A GRU with ``reset_after=False`` applies the reset
    gate before the recurrent product, which PyTorch's GRU cannot express: ValueError.
    ``batch_first`` defaults to True, Keras's layout (B, T, I).
    """
    cell = cells.by_name(kind)
    if cell.keras_reset_after and not reset_after:
        raise ValueError("reset_after: a Keras GRU with reset_after=False applies the reset gate before the "
                         "recurrent product (n = tanh(W x + U (r ⊙ h))), which PyTorch's GRU formulation cannot "
                         "express; re-train or convert with reset_after=True")
    if not isinstance(weights, (list, tuple)) or len(weights) not in (2, 3):
        got = f"{type(weights).__name__} of length {len(weights)}" if isinstance(weights, (list, tuple)) \
            else type(weights).__name__
        raise TypeError(f"weights: expected a list [kernel, recurrent_kernel] or [kernel, recurrent_kernel, bias] "
                        f"(keras_layer.get_weights()), got {got}")
    gates = cell.num_gates
    kernel = as_real_array(weights[0], "kernel", np.float64)
    recurrent = as_real_array(weights[1], "recurrent_kernel", np.float64)
    if recurrent.ndim != 2 or recurrent.shape[0] < 1 or recurrent.shape[1] != gates * recurrent.shape[0]:
        raise ValueError(f"recurrent_kernel: expected shape (H, {gates}H) with H >= 1, got {recurrent.shape}")
    H = recurrent.shape[0]
    if kernel.ndim != 2 or kernel.shape[0] < 1 or kernel.shape[1] != gates * H:
        raise ValueError(f"kernel: expected shape (I, {gates}H) = (I, {gates * H}) with I >= 1, got {kernel.shape}")
    I = kernel.shape[0]
    has_bias = len(weights) == 3

    # Keras stores the kernels transposed, (·, G*H), with its own gate order.
    w_ih, w_hh = cells.reorder_gates(kernel.T, cell.keras_gates), cells.reorder_gates(recurrent.T, cell.keras_gates)
    state = {"weight_ih_l0": w_ih, "weight_hh_l0": w_hh}
    if has_bias:
        bias = as_real_array(weights[2], "bias", np.float64)
        if cell.keras_reset_after:  # an input and a recurrent bias
            check_shape(bias, "bias", (2, gates * H), f"(2, {gates}H) [input bias, recurrent bias] (reset_after=True)")
            b_ih, b_hh = bias[0], bias[1]
        else:  # one bias: b_hh = 0
            check_shape(bias, "bias", (gates * H,), f"({gates}H,)")
            b_ih, b_hh = bias, np.zeros(gates * H)
        state.update({"bias_ih_l0": cells.reorder_gates(b_ih, cell.keras_gates),
                      "bias_hh_l0": cells.reorder_gates(b_hh, cell.keras_gates)})

    options: dict[str, Any] = {"nonlinearity": nonlinearity} if cells.NONLINEARITY in cell.options else {}
    layer = _LAYERS[cell](I, H, bias=has_bias, batch_first=batch_first, dtype=dtype, **options)
    layer.load_state_dict(state)
    return layer

