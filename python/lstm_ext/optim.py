"""Optimizers with torch.optim's update rules, over NumPy parameters updated in place.

For example::

    optimizer = lstm_ext.Adam(layer.named_parameters(), lr=1e-3)
    ...
    layer.backward(dy)
    lstm_ext.clip_grad_norm(layer.grads, max_norm=1.0)
    optimizer.step(layer.grads)
    layer.zero_grad()

An optimizer holds the parameters by name (the arrays themselves); ``step(grads)`` takes the
gradients by the same names. ``state_dict()`` / ``load_state_dict()`` carry the step count, the
hyper-parameters and the per-parameter buffers (momentum, moments), so that training resumed
from a checkpoint continues exactly.

The update rules::

    SGD:   g = grad + wd·p;  with momentum: b = μ·b + (1 − dampening)·g (b = g at the first step),
           g = g + μ·b (Nesterov) or g = b;  p −= lr·g
    Adam:  g = grad + wd·p;  m = β1·m + (1 − β1)·g;  v = β2·v + (1 − β2)·g²;
           p −= lr · (m / (1 − β1ᵗ)) / (√(v / (1 − β2ᵗ)) + eps)
    AdamW: p −= lr·wd·p first (decoupled weight decay), then Adam without the wd term.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Protocol, Union

import numpy as np
from numpy.typing import ArrayLike

from ._checks import as_real_array

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm", "OPTIMIZERS"]


class HasParameters(Protocol):
    """A module: anything with named_parameters()."""

    def named_parameters(self) -> dict[str, np.ndarray]: ...


# What an optimizer updates: {name: array} or a module.
Params = Union[dict[str, np.ndarray], HasParameters]


def _check_number(value: object, name: str, low: float = 0.0, high: Optional[float] = None,
                  low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name}: expected a finite number, got {type(value).__name__} {value!r}")
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value >= high):  # type: ignore[operator]  # typeshed: Real lacks __ge__
        bounds = f"{'(' if low_open else '['}{low}, {high if high is not None else '∞'})"
        raise ValueError(f"{name}: expected a value in {bounds}, got {value}")
    return float(value)


class Optimizer:
    """What every optimizer shares: the parameters by name, the step count, the buffers."""

    hyper_names: tuple[str, ...] = ()

    def __init__(self, params: Optional[Params] = None, *, lr: float) -> None:
        self.lr = _check_number(lr, "lr", low_open=True)
        self.params: dict[str, np.ndarray] = {}
        self.steps = 0
        self.buffers: dict[str, dict[str, np.ndarray]] = {}  # buffer kind -> parameter name -> array
        if params is not None:
            self.bind(params)

    def bind(self, params: Params) -> Optimizer:
        """Attach the parameters to update: a dict {name: array} (or anything with named_parameters())."""
        if hasattr(params, "named_parameters"):
            params = params.named_parameters()
        if not isinstance(params, dict) or not params:
            raise TypeError(f"params: expected a non-empty dict {{name: array}} or a module, got {type(params).__name__}")
        for name, value in params.items():
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                raise TypeError(f"params[{name!r}]: expected a floating-point NumPy array, got {type(value).__name__}")
        self.params = dict(params)
        return self

    def step(self, grads: Mapping[str, ArrayLike]) -> None:
        """Update every parameter in place from its gradient (grads: {name: array}, the same names)."""
        if not self.params:
            raise RuntimeError("step: no parameters; give them to the constructor or to bind()")
        missing = [name for name in self.params if name not in grads]
        if missing:
            raise KeyError(f"grads: missing gradients for {missing}")
        checked: dict[str, np.ndarray] = {}
        for name, p in self.params.items():
            g = as_real_array(grads[name], f"grads[{name!r}]", p.dtype)  # complex, object, text: TypeError
            if g.shape != p.shape:
                raise ValueError(f"grads[{name!r}]: expected shape {p.shape}, got {g.shape}")
            checked[name] = g
        self.steps += 1
        for name, p in self.params.items():
            self._update(name, p, checked[name])

    def _buffer(self, kind: str, name: str, like: np.ndarray) -> np.ndarray:
        store = self.buffers.setdefault(kind, {})
        if name not in store:
            store[name] = np.zeros_like(like)
        return store[name]

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    # -- state ------------------------------------------------------------------------------------

    def hyper(self) -> dict[str, Any]:
        """The hyper-parameters (JSON-able)."""
        return {"lr": self.lr, **{name: getattr(self, name) for name in self.hyper_names}}

    def state_dict(self) -> dict[str, Any]:
        """{'type', 'hyper', 'steps', 'buffers': {kind: {name: array copy}}}."""
        return {"type": type(self).__name__, "hyper": self.hyper(), "steps": self.steps,
                "buffers": {kind: {n: a.copy() for n, a in store.items()} for kind, store in self.buffers.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the step count, hyper-parameters and buffers (checked against the parameters)."""
        if state.get("type") != type(self).__name__:
            raise ValueError(f"state: an optimizer state of type {state.get('type')!r}, expected {type(self).__name__!r}")
        buffers: dict[str, dict[str, np.ndarray]] = {}
        for kind, store in state["buffers"].items():
            buffers[kind] = {}
            for name, value in store.items():
                if self.params and (name not in self.params or np.shape(value) != self.params[name].shape):
                    raise ValueError(f"state: buffer {kind}[{name!r}] does not match a parameter of that name and shape")
                dtype = self.params[name].dtype if self.params else np.asarray(value).dtype
                buffers[kind][name] = np.array(value, dtype=dtype)
        for key, value in state["hyper"].items():
            setattr(self, key, tuple(value) if isinstance(value, list) else value)
        self.steps = int(state["steps"])
        self.buffers = buffers

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and weight decay (torch.optim.SGD)."""

    hyper_names = ("momentum", "dampening", "nesterov", "weight_decay")

    def __init__(self, params: Optional[Params] = None, *, lr: float = 0.01, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> None:
        self.momentum = _check_number(momentum, "momentum", 0.0)
        self.dampening = _check_number(dampening, "dampening", 0.0)
        self.weight_decay = _check_number(weight_decay, "weight_decay", 0.0)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov: needs momentum > 0 and dampening = 0")
        super().__init__(params, lr=lr)

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            if "momentum" not in self.buffers or name not in self.buffers["momentum"]:
                b = self._buffer("momentum", name, p)
                b[...] = g
            else:
                b = self.buffers["momentum"][name]
                b *= self.momentum
                b += (1.0 - self.dampening) * g
            g = g + self.momentum * b if self.nesterov else b
        p -= self.lr * g


class Adam(Optimizer):
    """Adam (torch.optim.Adam): weight decay as an L2 term added to the gradient."""

    hyper_names = ("betas", "eps", "weight_decay")
    decoupled = False

    def __init__(self, params: Optional[Params] = None, *, lr: float = 1e-3,
                 betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        self.betas = (_check_number(betas[0], "betas[0]", 0.0, 1.0), _check_number(betas[1], "betas[1]", 0.0, 1.0))
        self.eps = _check_number(eps, "eps", 0.0)
        self.weight_decay = _check_number(weight_decay, "weight_decay", 0.0)
        super().__init__(params, lr=lr)

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        beta1, beta2 = self.betas
        if self.weight_decay:
            if self.decoupled:
                p *= 1.0 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
        m = self._buffer("exp_avg", name, p)
        v = self._buffer("exp_avg_sq", name, p)
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * g * g
        bias1 = 1.0 - beta1 ** self.steps
        bias2 = 1.0 - beta2 ** self.steps
        denominator = np.sqrt(v) / math.sqrt(bias2) + self.eps
        p -= (self.lr / bias1) * m / denominator


class AdamW(Adam):
    """AdamW (torch.optim.AdamW): decoupled weight decay, p ← p·(1 − lr·wd) before the Adam step."""

    decoupled = True

    def __init__(self, params: Optional[Params] = None, *, lr: float = 1e-3,
                 betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def clip_grad_norm(grads: Union[Mapping[str, np.ndarray], Sequence[np.ndarray]], max_norm: float) -> float:
    """Scale every gradient in place so that their joint L2 norm is at most max_norm.

    grads: {name: array} (e.g. a module's .grads) or a list of arrays. Returns the norm before
    clipping (``torch.nn.utils.clip_grad_norm_``'s rule: scale by max_norm / (norm + 1e-6) when that
    is below 1).
    """
    max_norm = _check_number(max_norm, "max_norm", low_open=True)
    named = grads.items() if isinstance(grads, dict) else enumerate(grads)
    arrays = []
    for key, a in named:
        if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
            raise TypeError(f"grads[{key!r}]: expected a floating-point NumPy array (scaled in place), "
                            f"got {type(a).__name__}{'' if not isinstance(a, np.ndarray) else ' of dtype ' + str(a.dtype)}")
        if not a.flags.writeable:
            raise ValueError(f"grads[{key!r}]: expected a writeable array (scaled in place), got a read-only one")
        arrays.append(a)
    total = math.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in arrays))
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for a in arrays:
            a *= a.dtype.type(scale)
    return total


# By the name a checkpoint stores.
OPTIMIZERS: dict[str, type[Optimizer]] = {cls.__name__: cls for cls in (SGD, Adam, AdamW)}
