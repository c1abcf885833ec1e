"""Loss functions: each returns (loss, gradient of the loss with respect to its first argument).

For example::

    loss, dy = lstm_ext.mse_loss(prediction, target)
    loss, dlogits = lstm_ext.cross_entropy(logits, labels, ignore_index=-1)

``mask`` (broadcastable to the leading axes of the prediction, True = counted) or
``ignore_index`` (cross_entropy) leave padded steps out; ``reduction`` is "mean" (over the
counted elements for mse_loss, the counted positions for cross_entropy) or "sum". The
gradient of a left-out position is zero. Arithmetic is in the prediction's dtype.
"""

from __future__ import annotations

from typing import Callable, Optional, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import functional
from ._checks import as_real_array

__all__ = ["mse_loss", "cross_entropy", "counted_elements", "LOSSES"]

_REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")


def _float_array(value: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(value)
    dtype = array.dtype if array.dtype in (np.float32, np.float64) else np.float64
    return as_real_array(value, name, dtype)


@overload
def _read_mask(mask: None, shape: tuple[int, ...], name: str = ...) -> None: ...
@overload
def _read_mask(mask: ArrayLike, shape: tuple[int, ...], name: str = ...) -> NDArray[np.bool_]: ...
def _read_mask(mask: Optional[ArrayLike], shape: tuple[int, ...], name: str = "mask") -> Optional[NDArray[np.bool_]]:
    """A boolean mask broadcast to `shape` (the leading axes of the prediction), or None."""
    if mask is None:
        return None
    array = np.asarray(mask)
    if array.dtype != bool:
        raise TypeError(f"{name}: expected a boolean array (True = counted), got dtype {array.dtype}")
    try:
        return np.broadcast_to(array, shape)
    except ValueError:
        raise ValueError(f"{name}: expected a shape broadcastable to {shape}, got {array.shape}") from None


def _mse_weights(mask: Optional[ArrayLike], p: np.ndarray) -> Optional[np.ndarray]:
    """The mask as 0/1 weights broadcastable to the prediction p, or None."""
    if mask is None:
        return None
    m = np.asarray(mask)
    m = _read_mask(m, p.shape[:m.ndim] if m.ndim < p.ndim else p.shape)
    weights: np.ndarray = m.reshape(m.shape + (1,) * (p.ndim - m.ndim)).astype(p.dtype)
    return weights


def _mse_count(weights: Optional[np.ndarray], p: np.ndarray) -> float:
    return float(p.size) if weights is None else float(np.sum(np.broadcast_to(weights, p.shape)))


def _cross_entropy_counted(labels: np.ndarray, mask: Optional[ArrayLike],
                           ignore_index: Optional[int]) -> NDArray[np.bool_]:
    counted = np.ones(labels.shape, dtype=bool)
    if ignore_index is not None:
        counted &= labels != ignore_index
    if mask is not None:
        counted &= _read_mask(mask, labels.shape)
    return counted


def counted_elements(loss_name: str, prediction: ArrayLike, target: ArrayLike,
                     mask: Optional[ArrayLike] = None) -> float:
    """The number of elements loss `loss_name` ('mse' or 'cross_entropy', default arguments)
    averages over with reduction='mean': its 'sum' divided by this is its 'mean'."""
    if loss_name == "mse":
        p = _float_array(prediction, "prediction")
        return _mse_count(_mse_weights(mask, p), p)
    return float(np.sum(_cross_entropy_counted(np.asarray(target), mask, None)))


def mse_loss(prediction: ArrayLike, target: ArrayLike, mask: Optional[ArrayLike] = None,
             reduction: str = "mean") -> tuple[float, np.ndarray]:
    """Mean squared error: L = mean (or sum) of (prediction − target)² over the counted elements.

    prediction and target have the same shape; mask (optional) covers the prediction's shape or
    its leading axes (e.g. (B, T) for a (B, T, F) prediction: whole steps left out).
    Returns (loss as a float, dL/dprediction).
    """
    _check_reduction(reduction)
    p = _float_array(prediction, "prediction")
    t = as_real_array(target, "target", p.dtype)
    if t.shape != p.shape:
        raise ValueError(f"target: expected the prediction's shape {p.shape}, got {t.shape}")
    diff = p - t
    weights = _mse_weights(mask, p)
    if weights is not None:
        diff = diff * weights
    count = _mse_count(weights, p)
    total = float(np.sum(diff * diff))
    if reduction == "sum":
        return total, 2.0 * diff
    scale = 1.0 / max(count, 1.0)
    return total * scale, (2.0 * scale) * diff


def cross_entropy(logits: ArrayLike, target: ArrayLike, mask: Optional[ArrayLike] = None,
                  ignore_index: Optional[int] = None, reduction: str = "mean") -> tuple[float, np.ndarray]:
    """Softmax cross-entropy over the last axis of `logits` with integer class `target`.

    logits (..., C), target (...) integers in [0, C) (or ignore_index). Positions where mask is
    False or target == ignore_index are left out. L = −Σ log softmax(logits)[target], averaged
    over the counted positions ("mean") or summed. Returns (loss as a float, dL/dlogits).
    """
    _check_reduction(reduction)
    z = _float_array(logits, "logits")
    if z.ndim < 1 or z.shape[-1] < 1:
        raise ValueError(f"logits: expected shape (..., C) with C >= 1 classes, got {z.shape}")
    labels = np.asarray(target)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"target: expected integer class labels, got dtype {labels.dtype}")
    if labels.shape != z.shape[:-1]:
        raise ValueError(f"target: expected shape {z.shape[:-1]} (the logits' shape without the class axis), "
                         f"got {labels.shape}")
    counted = _cross_entropy_counted(labels, mask, ignore_index)
    C = z.shape[-1]
    bad = counted & ((labels < 0) | (labels >= C))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"target: expected class labels in [0, {C}), got {labels[index]} at index {index}")

    # log softmax, stable: z − max − log Σ exp(z − max). exp and log are the core's (functional):
    # NumPy's take a SIMD path per CPU, and the gradient would not be the same bits everywhere.
    shifted = z - np.max(z, axis=-1, keepdims=True)
    log_sum = functional.log(np.sum(functional.exp(shifted), axis=-1, keepdims=True))
    log_probs = shifted - log_sum
    safe_labels = np.where(counted, labels, 0)
    picked = np.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]
    weights = counted.astype(z.dtype)
    total = -float(np.sum(picked * weights))
    grad = functional.exp(log_probs)                # softmax
    np.put_along_axis(grad, safe_labels[..., None], np.take_along_axis(grad, safe_labels[..., None], axis=-1) - 1,
                      axis=-1)                      # softmax − one_hot(target)
    grad *= weights[..., None]
    if reduction == "sum":
        return total, grad
    scale = 1.0 / max(float(np.sum(weights)), 1.0)
    return total * scale, grad * z.dtype.type(scale)


# (prediction, target, mask=None, reduction="mean") -> (loss, gradient)
Loss = Callable[..., tuple[float, np.ndarray]]
LOSSES: dict[str, Loss] = {"mse": mse_loss, "cross_entropy": cross_entropy}  # by the name compile() takes
