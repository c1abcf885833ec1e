"""The pieces around the recurrent layers: Linear, Embedding, LastStep and activations.

Like the recurrent layers, each is a Module: ``forward`` (or calling it) in training mode keeps
what ``backward(d_output)`` needs; ``backward`` adds the parameter gradients into ``grads`` and
returns the gradient of the input. Arithmetic is NumPy (a single matrix product or a gather per
call: nothing to gain from the compiled core).

For example::

    head = lstm_ext.Linear(32, 1)          # (..., 32) -> (..., 1), any leading shape
    embed = lstm_ext.Embedding(100, 16)    # integer tokens (...) -> (..., 16)
    last = lstm_ext.LastStep()             # (B, T, F) + lengths -> (B, F): each sequence's last valid step
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import functional
from ._checks import as_real_array, check_positive_int, check_shape, read_lengths
from .cells import check_flag
from .layers import GRU, LSTM, RNN, Module

__all__ = ["Linear", "Embedding", "LastStep", "Tanh", "ReLU", "Sigmoid", "LAYER_TYPES"]


def _keep(array: np.ndarray, source: object) -> np.ndarray:
    """The array to keep for backward: a copy when it shares memory with the caller's input, so
    that changing that input after the forward does not change the gradients."""
    return array.copy() if np.may_share_memory(array, source) else array


class Linear(Module):
    """y = x · Wᵀ + b over the last axis: x (..., in_features) -> y (..., out_features).

    Parameters ``weight`` (out_features, in_features) and ``bias`` (out_features,), initialised
    like torch.nn.Linear: U(−1/√in, 1/√in) from a generator seeded with ``seed``.
    """

    FIXED_ARGUMENTS = ("in_features", "out_features", "has_bias", "dtype", "seed")  # (Module's rule)

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: DTypeLike = np.float32,
                 seed: Optional[int] = None) -> None:
        super().__init__(dtype)
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.has_bias = check_flag(bias, "bias")  # (the parameter itself is the attribute `bias`, as in torch)
        self.seed = seed
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        for name, shape in self.parameter_shapes(self.config()).items():
            self._add_parameter(name, rng.uniform(-bound, bound, size=shape))
        self._saved: Optional[np.ndarray] = None

    @classmethod
    def parameter_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        out_features = check_positive_int(config["out_features"], "out_features")
        in_features = check_positive_int(config["in_features"], "in_features")
        shapes: dict[str, tuple[int, ...]] = {"weight": (out_features, in_features)}
        if config.get("bias", True):
            shapes["bias"] = (out_features,)
        return shapes

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.has_bias,
                "dtype": self.dtype.name, "seed": self.seed}

    def forward(self, x: ArrayLike) -> np.ndarray:
        x_array = as_real_array(x, "x", self.dtype)
        if x_array.ndim < 1 or x_array.shape[-1] != self.in_features:
            raise ValueError(f"x: expected shape (..., in_features) = (..., {self.in_features}), got {x_array.shape}")
        # In the core (functional.linear_forward): NumPy's product would depend on the CPU's BLAS kernel.
        y = functional.linear_forward(x_array, self._parameters["weight"],
                                      self._parameters["bias"] if self.has_bias else None)
        self._saved = _keep(x_array, x) if self.training else None
        return y

    def backward(self, dy: ArrayLike) -> np.ndarray:
        if self._saved is None:
            raise RuntimeError("backward: no training-mode forward to backpropagate through")
        x = self._saved
        dy = as_real_array(dy, "dy", self.dtype)
        check_shape(dy, "dy", x.shape[:-1] + (self.out_features,), "of y")
        dx, dw, db = functional.linear_backward(dy, x, self._parameters["weight"], bias=self.has_bias)
        self.grads["weight"] += dw
        if db is not None:
            self.grads["bias"] += db
        self._saved = None
        return dx

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={self.has_bias}, dtype={self.dtype.name})"


class Embedding(Module):
    """Integer tokens (...) -> their rows of ``weight`` (num_embeddings, embedding_dim): (..., dim).

    Initialised like torch.nn.Embedding: N(0, 1). Tokens must be integers in [0, num_embeddings).
    backward adds into the rows of the tokens seen and returns None (tokens have no gradient).
    """

    FIXED_ARGUMENTS = ("num_embeddings", "embedding_dim", "dtype", "seed")  # (Module's rule)

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype: DTypeLike = np.float32,
                 seed: Optional[int] = None) -> None:
        super().__init__(dtype)
        self.num_embeddings = check_positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = check_positive_int(embedding_dim, "embedding_dim")
        self.seed = seed
        rng = np.random.default_rng(seed)
        self._add_parameter("weight", rng.standard_normal(self.parameter_shapes(self.config())["weight"]))
        self._saved: Optional[NDArray[np.integer[Any]]] = None

    @classmethod
    def parameter_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        return {"weight": (check_positive_int(config["num_embeddings"], "num_embeddings"),
                           check_positive_int(config["embedding_dim"], "embedding_dim"))}

    def config(self) -> dict[str, Any]:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "dtype": self.dtype.name, "seed": self.seed}

    def forward(self, tokens: ArrayLike) -> np.ndarray:
        index = np.asarray(tokens)
        if index.dtype.kind not in "iu":
            raise TypeError(f"tokens: expected integers in [0, {self.num_embeddings}), got dtype {index.dtype}")
        bad = (index < 0) | (index >= self.num_embeddings)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"tokens: expected integers in [0, {self.num_embeddings}), got {index[where]} at "
                             f"index {where}")
        self._saved = index.copy() if self.training else None
        y: np.ndarray = self._parameters["weight"][index]
        return y

    def backward(self, dy: ArrayLike) -> None:
        if self._saved is None:
            raise RuntimeError("backward: no training-mode forward to backpropagate through")
        index = self._saved
        dy = as_real_array(dy, "dy", self.dtype)
        check_shape(dy, "dy", index.shape + (self.embedding_dim,), "of y")
        np.add.at(self.grads["weight"], index.reshape(-1), dy.reshape(-1, self.embedding_dim))
        self._saved = None
        return None

    def __repr__(self) -> str:
        return f"Embedding({self.num_embeddings}, {self.embedding_dim}, dtype={self.dtype.name})"


class LastStep(Module):
    """Sequence to one: y (B, T, F) -> (B, F), each sequence's output at its last valid step
    (lengths[b] − 1, or T − 1 without lengths). Batch-major, as in a Sequential model."""

    def __init__(self, dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self._saved: Optional[tuple[tuple[int, ...], NDArray[np.integer[Any]]]] = None

    def config(self) -> dict[str, Any]:
        return {"dtype": self.dtype.name}

    def forward(self, y: ArrayLike, lengths: Optional[ArrayLike] = None) -> np.ndarray:
        y = as_real_array(y, "y", self.dtype)
        if y.ndim != 3:
            raise ValueError(f"y: expected a 3-D array (B, T, F), got shape {y.shape}")
        B, T, _ = y.shape
        if T == 0:
            raise ValueError(f"y: expected at least one step (B, T, F) with T >= 1, got shape {y.shape}")
        last = np.full(B, T - 1) if lengths is None else read_lengths(lengths, T, B) - 1
        if self.training:
            self._saved = (y.shape, last)
        y_last: np.ndarray = y[np.arange(B), last]
        return y_last

    def backward(self, dy: ArrayLike) -> np.ndarray:
        if self._saved is None:
            raise RuntimeError("backward: no training-mode forward to backpropagate through")
        shape, last = self._saved
        dy = as_real_array(dy, "dy", self.dtype)
        check_shape(dy, "dy", (shape[0], shape[2]), "(B, F)")
        dx: np.ndarray = np.zeros(shape, dtype=self.dtype)
        dx[np.arange(shape[0]), last] = dy
        self._saved = None
        return dx

    def __repr__(self) -> str:
        return "LastStep()"


class _Activation(Module):
    """An elementwise function with no parameters; backward from the kept output."""

    def __init__(self, dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self._saved: Optional[np.ndarray] = None

    def config(self) -> dict[str, Any]:
        return {"dtype": self.dtype.name}

    def _apply(self, x: np.ndarray) -> np.ndarray:
        """y = f(x), elementwise."""
        raise NotImplementedError

    def _slope(self, y: np.ndarray) -> np.ndarray:
        """f'(x) from y = f(x)."""
        raise NotImplementedError

    def forward(self, x: ArrayLike) -> np.ndarray:
        y = self._apply(as_real_array(x, "x", self.dtype))
        self._saved = y if self.training else None
        return y

    def backward(self, dy: ArrayLike) -> np.ndarray:
        if self._saved is None:
            raise RuntimeError("backward: no training-mode forward to backpropagate through")
        y, self._saved = self._saved, None
        dy = as_real_array(dy, "dy", self.dtype)
        check_shape(dy, "dy", y.shape, "of y")
        dx: np.ndarray = dy * self._slope(y)
        return dx

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Tanh(_Activation):
    """y = tanh(x)."""

    def _apply(self, x: np.ndarray) -> np.ndarray:
        return functional.tanh(x)  # the core's: NumPy's tanh takes a SIMD path per CPU

    def _slope(self, y: np.ndarray) -> np.ndarray:
        slope: np.ndarray = 1 - y * y
        return slope


class ReLU(_Activation):
    """y = max(x, 0)."""

    def _apply(self, x: np.ndarray) -> np.ndarray:
        y: np.ndarray = np.maximum(x, 0)
        return y

    def _slope(self, y: np.ndarray) -> np.ndarray:
        slope: np.ndarray = (y > 0).astype(self.dtype)
        return slope


class Sigmoid(_Activation):
    """y = 1 / (1 + e^(−x))."""

    def _apply(self, x: np.ndarray) -> np.ndarray:
        return functional.sigmoid(x)  # the core's, as the gates compute it: never overflows

    def _slope(self, y: np.ndarray) -> np.ndarray:
        slope: np.ndarray = y * (1 - y)
        return slope


# The layer types a Sequential holds and a checkpoint rebuilds, by class name.
LAYER_TYPES: dict[str, type[Module]] = {cls.__name__: cls for cls in (LSTM, GRU, RNN, Linear, Embedding, LastStep, Tanh,
                                                                     ReLU, Sigmoid)}
