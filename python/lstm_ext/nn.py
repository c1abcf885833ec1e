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

import numpy as np

from ._checks import as_real_array, check_positive_int, check_shape, read_lengths
from .layers import GRU, LSTM, RNN, Module

__all__ = ["Linear", "Embedding", "LastStep", "Tanh", "ReLU", "Sigmoid", "LAYER_TYPES"]


def _keep(array, source):
    """The array to keep for backward: a copy when it shares memory with the caller's input, so
    that changing that input after the forward does not change the gradients."""
    return array.copy() if np.may_share_memory(array, source) else array


class Linear(Module):
    """y = x · Wᵀ + b over the last axis: x (..., in_features) -> y (..., out_features).

    Parameters ``weight`` (out_features, in_features) and ``bias`` (out_features,), initialised
    like torch.nn.Linear: U(−1/√in, 1/√in) from a generator seeded with ``seed``.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, seed=None):
        super().__init__(dtype)
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.has_bias = bool(bias)  # (the parameter itself is the attribute `bias`, as in torch)
        self.seed = seed
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        for name, shape in self.parameter_shapes(self.config()).items():
            self._add_parameter(name, rng.uniform(-bound, bound, size=shape))
        self._saved = None

    @classmethod
    def parameter_shapes(cls, config: dict) -> dict[str, tuple]:
        out_features = check_positive_int(config["out_features"], "out_features")
        shapes = {"weight": (out_features, check_positive_int(config["in_features"], "in_features"))}
        if config.get("bias", True):
            shapes["bias"] = (out_features,)
        return shapes

    def config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.has_bias,
                "dtype": self.dtype.name, "seed": self.seed}

    def forward(self, x):
        x_array = as_real_array(x, "x", self.dtype)
        if x_array.ndim < 1 or x_array.shape[-1] != self.in_features:
            raise ValueError(f"x: expected shape (..., in_features) = (..., {self.in_features}), got {x_array.shape}")
        y = x_array @ self._parameters["weight"].T
        if self.has_bias:
            y += self._parameters["bias"]
        self._saved = _keep(x_array, x) if self.training else None
        return y

    def backward(self, dy):
        if self._saved is None:
            raise RuntimeError("backward: no training-mode forward to backpropagate through")
        x = self._saved
        dy = as_real_array(dy, "dy", self.dtype)
        check_shape(dy, "dy", x.shape[:-1] + (self.out_features,), "of y")
        dy2, x2 = dy.reshape(-1, self.out_features), x.reshape(-1, self.in_features)
        self.grads["weight"] += dy2.T @ x2
        if self.has_bias:
            self.grads["bias"] += dy2.sum(axis=0)
        self._saved = None
        return dy @ self._parameters["weight"]

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.has_bias}, dtype={self.dtype.name})"


class Embedding(Module):
    """Integer tokens (...) -> their rows of ``weight`` (num_embeddings, embedding_dim): (..., dim).

    Initialised like torch.nn.Embedding: N(0, 1). Tokens must be integers in [0, num_embeddings).
    backward adds into the rows of the tokens seen and returns None (tokens have no gradient).
    """

    def __init__(self, num_embeddings, embedding_dim, dtype=np.float32, seed=None):
        super().__init__(dtype)
        self.num_embeddings = check_positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = check_positive_int(embedding_dim, "embedding_dim")
        self.seed = seed
        rng = np.random.default_rng(seed)
        self._add_parameter("weight", rng.standard_normal(self.parameter_shapes(self.config())["weight"]))
        self._saved = None

    @classmethod
    def parameter_shapes(cls, config: dict) -> dict[str, tuple]:
        return {"weight": (check_positive_int(config["num_embeddings"], "num_embeddings"),
                           check_positive_int(config["embedding_dim"], "embedding_dim"))}

    def config(self) -> dict:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "dtype": self.dtype.name, "seed": self.seed}

    def forward(self, tokens):
        index = np.asarray(tokens)
        if index.dtype.kind not in "iu":
            raise TypeError(f"tokens: expected integers in [0, {self.num_embeddings}), got dtype {index.dtype}")
        bad = (index < 0) | (index >= self.num_embeddings)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"tokens: expected integers in [0, {self.num_embeddings}), got {index[where]} at "
                             f"index {where}")
        self._saved = index.copy() if self.training else None
        return self._parameters["weight"][index]

    def backward(self, dy):
        if self._saved is None:
            raise RuntimeError("backward: no training-mode forward to backpropagate through")
        index = self._saved
        dy = as_real_array(dy, "dy", self.dtype)
        check_shape(dy, "dy", index.shape + (self.embedding_dim,), "of y")
        np.add.at(self.grads["weight"], index.reshape(-1), dy.reshape(-1, self.embedding_dim))
        self._saved = None
        return None

    def __repr__(self):
        return f"Embedding({self.num_embeddings}, {self.embedding_dim}, dtype={self.dtype.name})"


class LastStep(Module):
    """Sequence to one: y (B, T, F) -> (B, F), each sequence's output at its last valid step
    (lengths[b] − 1, or T − 1 without lengths). Batch-major, as in a Sequential model."""

    def __init__(self, dtype=np.float32):
        super().__init__(dtype)
        self._saved = None

    def config(self) -> dict:
        return {"dtype": self.dtype.name}

    def forward(self, y, lengths=None):
        y = as_real_array(y, "y", self.dtype)
        if y.ndim != 3:
            raise ValueError(f"y: expected a 3-D array (B, T, F), got shape {y.shape}")
        B, T, _ = y.shape
        if T == 0:
            raise ValueError(f"y: expected at least one step (B, T, F) with T >= 1, got shape {y.shape}")
        last = np.full(B, T - 1) if lengths is None else read_lengths(lengths, T, B) - 1
        if self.training:
            self._saved = (y.shape, last)
        return y[np.arange(B), last]

    def backward(self, dy):
        if self._saved is None:
            raise RuntimeError("backward: no training-mode forward to backpropagate through")
        shape, last = self._saved
        dy = as_real_array(dy, "dy", self.dtype)
        check_shape(dy, "dy", (shape[0], shape[2]), "(B, F)")
        dx = np.zeros(shape, dtype=self.dtype)
        dx[np.arange(shape[0]), last] = dy
        self._saved = None
        return dx

    def __repr__(self):
        return "LastStep()"


class _Activation(Module):
    """An elementwise function with no parameters; backward from the kept output."""

    def __init__(self, dtype=np.float32):
        super().__init__(dtype)
        self._saved = None

    def config(self) -> dict:
        return {"dtype": self.dtype.name}

    def forward(self, x):
        y = self._apply(as_real_array(x, "x", self.dtype))
        self._saved = y if self.training else None
        return y

    def backward(self, dy):
        if self._saved is None:
            raise RuntimeError("backward: no training-mode forward to backpropagate through")
        y, self._saved = self._saved, None
        dy = as_real_array(dy, "dy", self.dtype)
        check_shape(dy, "dy", y.shape, "of y")
        return dy * self._slope(y)

    def __repr__(self):
        return f"{type(self).__name__}()"


class Tanh(_Activation):
    """y = tanh(x)."""

    def _apply(self, x):
        return np.tanh(x)

    def _slope(self, y):
        return 1 - y * y


class ReLU(_Activation):
    """y = max(x, 0)."""

    def _apply(self, x):
        return np.maximum(x, 0)

    def _slope(self, y):
        return (y > 0).astype(self.dtype)


class Sigmoid(_Activation):
    """y = 1 / (1 + e^(−x))."""

    def _apply(self, x):
        e = np.exp(-np.abs(x))  # never overflows: σ(x) = 1 / (1 + e^−x) for x >= 0, e^x / (1 + e^x) below
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(self.dtype)

    def _slope(self, y):
        return y * (1 - y)


# The layer types a Sequential holds and a checkpoint rebuilds, by class name.
LAYER_TYPES = {cls.__name__: cls for cls in (LSTM, GRU, RNN, Linear, Embedding, LastStep, Tanh, ReLU, Sigmoid)}
