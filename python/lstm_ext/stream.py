"""Step-by-step inference: an LSTM stack that keeps its weights and state in the core.

``stream = lstm.stream()`` copies the layer's weights once; ``h = stream.step(x_t)`` runs one
time step of every layer, x_t (B, input_size) -> h_t of the last layer (B, hidden_size), and
keeps (h, c) for the next step. A step checks only its input (shape and dtype) and allocates
only its output, so that it costs close to reading the weights once. The stream does not see
later changes to the layer's weights: make a new one after training.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _core, cells
from ._checks import check_memory, check_positive_int

__all__ = ["Stream"]


class _Layer(Protocol):
    """What a stream reads of its lstm_ext.LSTM (a Protocol: layers.py imports this module)."""

    @property
    def cell(self) -> cells.CellKind: ...
    @property
    def options(self) -> dict[str, Any]: ...
    @property
    def bidirectional(self) -> bool: ...
    @property
    def proj_size(self) -> int: ...
    @property
    def num_layers(self) -> int: ...
    @property
    def hidden_size(self) -> int: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...

    def state_dict(self) -> dict[str, np.ndarray]: ...


class Stream:
    """An LSTM stack's weights and (h, c), kept between steps (see the module doc).

    Build it with ``LSTM.stream(batch_size=1, state=None)``: one direction, no projection.
    ``batch_size`` is an integer >= 1 (TypeError for any other kind, bool included; MemoryError
    naming it, before anything is allocated, when the stream cannot fit in memory); ``state`` is
    (h, c), each (num_layers, batch_size, hidden_size) or None (zeros), or None.
    """

    def __init__(self, layer: _Layer, batch_size: int = 1,
                 state: Optional[tuple[ArrayLike, ArrayLike]] = None) -> None:
        if getattr(layer, "cell", None) is not cells.LSTM:
            raise TypeError(f"Stream: expected an lstm_ext.LSTM, got {type(layer).__name__}")
        if layer.bidirectional or layer.proj_size:
            raise ValueError("Stream: a stream runs one direction without projection; got "
                             f"bidirectional={layer.bidirectional}, proj_size={layer.proj_size}")
        cells.require_supported(layer.cell, layer.options, "stream", "Stream")
        batch_size = check_positive_int(batch_size, "batch_size")  # TypeError for a bool, a float, a string
        params = layer.state_dict()
        # What the core allocates, checked first: a copy of the weights, and per layer h (twice: a
        # step reads h_{t-1} while it writes h_t) and c, plus two (B, 4H) scratch buffers.
        L, H = layer.num_layers, layer.hidden_size
        check_memory(sum(value.size for value in params.values()) + batch_size * (3 * L + 8) * H,
                     layer.dtype.itemsize, "batch_size",
                     f"a stream of batch_size = {batch_size} (weights, states and scratch of {L} layer(s) of "
                     f"{H} units, {layer.dtype.name})")
        layers = [(params[f"weight_ih_l{k}"], params[f"weight_hh_l{k}"], params.get(f"bias_ih_l{k}"),
                   params.get(f"bias_hh_l{k}")) for k in range(layer.num_layers)]
        core: Union[type[_core.LstmStream32], type[_core.LstmStream64]] = (
            _core.LstmStream32 if layer.dtype == np.float32 else _core.LstmStream64)
        self._core: Union[_core.LstmStream32, _core.LstmStream64] = core(layers, batch_size)
        self.dtype = layer.dtype
        self.num_layers = layer.num_layers
        if state is not None:
            self.state = state

    @property
    def batch_size(self) -> int:
        return self._core.batch_size

    def step(self, x: np.ndarray) -> np.ndarray:
        """One time step: x (B, input_size) -> h of the last layer (B, hidden_size)."""
        return self._core.step(x)

    __call__ = step

    @property
    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """(h, c), each (num_layers, B, hidden_size): copies of the state the next step starts from."""
        return self._core.state()

    @state.setter
    def state(self, value: Union[tuple[ArrayLike, ArrayLike], list[ArrayLike], None]) -> None:
        if value is None:
            self._core.set_state(None, None)
            return
        if not isinstance(value, (tuple, list)) or len(value) != 2:  # a wrong length too, as the layers' state
            got = f" of length {len(value)}" if isinstance(value, (tuple, list)) else ""
            raise TypeError(f"state: expected (h, c) or None, got {type(value).__name__}{got}")
        self._core.set_state(value[0], value[1])

    def reset(self) -> None:
        """Zero state, as at the start of a sequence."""
        self._core.set_state(None, None)
