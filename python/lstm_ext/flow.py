"""Gradient flow: how much of a loss's gradient reaches each earlier time step.

For example::

    flow = lstm_ext.gradient_flow(layer, x)      # flow["h"][t] = mean over the batch of ‖∂L/∂h_t‖
    flow["c"]                                    # LSTM: ‖∂L/∂c_t‖, the cell path

The loss is on the last step only: L = Σ_b g · y_{T−1}[b] with g a fixed unit vector (drawn
from `seed`), so ∂L/∂h_{T−1} = g and every earlier norm measures what survives the trip back
through the recurrence. A vanilla RNN's norms fall off exponentially with the distance T−1−t;
an LSTM's cell path carries them much further.

The gradients come from the layer's own compiled forward and backward passes, run one step at
a time: the backward of step t, given ∂L/∂(h_t, c_t), returns ∂L/∂(h_{t−1}, c_{t−1}), the
gradient with respect to the state step t−1 hands on. (So ∂L/∂c_{T−1} = 0: the loss reads
h_{T−1} only.) By default the work is done in float64, so that vanishing gradients do not
underflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import cells
from ._checks import as_real_array, check_float_dtype
from .layers import RNNBase

if TYPE_CHECKING:
    from .model import Sequential

__all__ = ["gradient_flow"]


def _recurrent_layer(layer_or_model: Union[RNNBase, Sequential], x: ArrayLike) -> tuple[RNNBase, ArrayLike]:
    """The first recurrent layer and its input (x run through the layers before it)."""
    if isinstance(layer_or_model, RNNBase):
        return layer_or_model, x
    layers = getattr(layer_or_model, "layers", None)
    if layers is None:
        raise TypeError(f"layer_or_model: expected an LSTM, GRU or RNN layer or a Sequential model, got "
                        f"{type(layer_or_model).__name__}")
    was_training = layer_or_model.training
    layer_or_model.eval()
    try:
        for layer in layers:
            if isinstance(layer, RNNBase):
                return layer, x
            x = layer(x)
    finally:
        layer_or_model.train(was_training)
    raise ValueError("layer_or_model: the model has no recurrent layer")


def gradient_flow(layer_or_model: Union[RNNBase, Sequential], x: ArrayLike, seed: Optional[int] = 0,
                  dtype: DTypeLike = np.float64) -> dict[str, np.ndarray]:
    """{'h': (T,) mean ‖∂L/∂h_t‖ and, for an LSTM, 'c': (T,) mean ‖∂L/∂c_t‖} for a loss on the
    last step (module docstring). x is the layer's input ((T, B, I), or (B, T, I) with
    batch_first); for a Sequential, the model's input, run through the layers before its first
    recurrent layer, which must have one layer, one direction and no projection."""
    layer, x = _recurrent_layer(layer_or_model, x)
    if layer.num_layers != 1 or layer.bidirectional or layer.output_size != layer.hidden_size:
        raise ValueError("layer_or_model: gradient_flow follows one layer in one direction without projection "
                         f"(got num_layers={layer.num_layers}, bidirectional={layer.bidirectional})")
    cells.require_supported(layer.cell, layer.options, "flow", "gradient_flow")
    dtype = check_float_dtype(dtype)
    x = as_real_array(x, "x", dtype)
    if x.ndim != 3 or x.shape[2] != layer.input_size:
        raise ValueError(f"x: expected a 3-D array with I = {layer.input_size} on the last axis, got shape {x.shape}")
    if layer.batch_first:
        x = x.swapaxes(0, 1)
    x = np.ascontiguousarray(x)  # (T, B, I)
    T, B, _ = x.shape
    cell = layer.cell
    weights = {name[:-len("_l0")]: value.astype(dtype) for name, value in layer.named_parameters().items()}

    # Forward, one step at a time, keeping each step's workspace.
    state: Sequence[Optional[np.ndarray]] = [None] * len(cell.state)  # h (, c), each (B, ·); None = zeros
    steps: list[tuple[np.ndarray, Optional[np.ndarray]]] = []
    for t in range(T):
        x_t = x[t:t + 1]
        _, state, ws = cell.forward(x_t, weights, state, layer.options, lengths=None, training=True,
                                    bidirectional=False)
        steps.append((x_t, ws))

    # Backward from the loss on the last step, one step at a time: ∂L/∂h_{T−1} = g, the other
    # parts of the state (c) get nothing from the loss.
    h_last = state[0]
    assert h_last is not None  # the forward ran T >= 1 steps
    g = np.random.default_rng(seed).standard_normal(h_last.shape[1])
    dstate = [np.broadcast_to(g / np.linalg.norm(g), h_last.shape).astype(dtype)]
    dstate += [np.zeros_like(part) for part in state[1:]]
    norms = {part: np.zeros(T) for part in cell.state}
    for t in range(T - 1, -1, -1):
        for part, d in zip(cell.state, dstate):
            norms[part][t] = np.linalg.norm(d, axis=1).mean()
        if t == 0:
            break
        x_t, ws = steps[t]
        _, dstate, _ = cell.backward(None, dstate, x_t, weights, ws, layer.options, lengths=None, bias=layer.bias,
                                     bidirectional=False)
    return norms
