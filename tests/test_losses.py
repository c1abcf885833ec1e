"""Losses: values by hand, gradients by finite differences, masks and ignore_index, torch."""

from __future__ import annotations

import numpy as np
import pytest

import lstm_ext
from conftest import numeric_gradient, needs
from lstm_ext.testing import relative_error


def test_mse_by_hand():
    loss, grad = lstm_ext.mse_loss([1.0, 2.0, 4.0], [1.0, 0.0, 1.0])
    assert loss == pytest.approx((0 + 4 + 9) / 3)
    np.testing.assert_allclose(grad, [0, 4 / 3, 6 / 3])
    loss, grad = lstm_ext.mse_loss([1.0, 2.0, 4.0], [1.0, 0.0, 1.0], reduction="sum")
    assert loss == 13 and np.allclose(grad, [0, 4, 6])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_gradient_with_a_step_mask(reduction, rng):
    p, t = rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 4, 2))
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=bool)  # (B, T): whole steps out
    loss, grad = lstm_ext.mse_loss(p, t, mask=mask, reduction=reduction)
    expected = np.sum(((p - t) ** 2)[mask]) / (1 if reduction == "sum" else mask.sum() * 2)
    assert loss == pytest.approx(expected)
    numeric = numeric_gradient(lambda q: lstm_ext.mse_loss(q, t, mask=mask, reduction=reduction)[0], p)
    assert relative_error(grad, numeric) < 1e-8
    assert not grad[~mask].any()


def test_cross_entropy_by_hand():
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    loss, grad = lstm_ext.cross_entropy(logits, np.array([0, 2]))
    assert loss == pytest.approx(-(np.log(0.5) + np.log(0.8)) / 2)
    np.testing.assert_allclose(grad, np.array([[0.5 - 1, 0.25, 0.25], [0.1, 0.1, 0.8 - 1]]) / 2)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_gradient_with_ignore_index_and_mask(reduction, rng):
    logits = rng.standard_normal((2, 5, 4)) * 3
    labels = rng.integers(0, 4, size=(2, 5))
    labels[0, 4] = -100
    mask = np.ones((2, 5), dtype=bool)
    mask[1, 3:] = False

    def f(z):
        return lstm_ext.cross_entropy(z, labels, mask=mask, ignore_index=-100, reduction=reduction)[0]

    loss, grad = lstm_ext.cross_entropy(logits, labels, mask=mask, ignore_index=-100, reduction=reduction)
    assert relative_error(grad, numeric_gradient(f, logits)) < 1e-8
    assert not grad[0, 4].any() and not grad[1, 3:].any()


def test_cross_entropy_is_stable_for_large_logits():
    loss, grad = lstm_ext.cross_entropy(np.array([[1000.0, 0.0], [-1000.0, 0.0]]), np.array([0, 0]))
    assert np.isfinite(loss) and loss == pytest.approx(500.0) and np.isfinite(grad).all()


def test_losses_match_torch(rng):
    torch = needs("torch")
    logits, labels = rng.standard_normal((3, 6, 5)), rng.integers(0, 5, size=(3, 6))
    labels[2, 1] = -100
    z = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(z.reshape(-1, 5), torch.tensor(labels).reshape(-1), ignore_index=-100)
    expected.backward()
    loss, grad = lstm_ext.cross_entropy(logits, labels, ignore_index=-100)
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    assert relative_error(grad, z.grad.numpy()) < 1e-12
    p, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    pt = torch.tensor(p, requires_grad=True)
    expected = torch.nn.functional.mse_loss(pt, torch.tensor(t))
    expected.backward()
    loss, grad = lstm_ext.mse_loss(p, t)
    assert loss == pytest.approx(expected.item(), rel=1e-12) and relative_error(grad, pt.grad.numpy()) < 1e-12


def test_float32_stays_float32():
    loss, grad = lstm_ext.cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 1]))
    assert grad.dtype == np.float32
    assert lstm_ext.mse_loss(np.zeros(3, np.float32), np.ones(3))[1].dtype == np.float32


BAD = {
    "mse shapes": (lambda: lstm_ext.mse_loss(np.zeros(3), np.zeros(4)), ValueError,
                   r"target: expected the prediction's shape \(3,\), got \(4,\)"),
    "mse mask dtype": (lambda: lstm_ext.mse_loss(np.zeros(3), np.zeros(3), mask=np.ones(3)), TypeError,
                       r"mask: expected a boolean array"),
    "mse mask shape": (lambda: lstm_ext.mse_loss(np.zeros((2, 3)), np.zeros((2, 3)), mask=np.ones(4, bool)),
                       ValueError, r"mask: expected a shape broadcastable"),
    "reduction": (lambda: lstm_ext.mse_loss(np.zeros(3), np.zeros(3), reduction="max"), ValueError,
                  r"reduction: expected 'mean' or 'sum', got 'max'"),
    "ce float labels": (lambda: lstm_ext.cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0])), TypeError,
                        r"target: expected integer class labels, got dtype float64"),
    "ce label range": (lambda: lstm_ext.cross_entropy(np.zeros((2, 3)), np.array([0, 3])), ValueError,
                       r"target: expected class labels in \[0, 3\), got 3 at index \(1,\)"),
    "ce shapes": (lambda: lstm_ext.cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2])), ValueError,
                  r"target: expected shape \(2,\)"),
    "ce complex": (lambda: lstm_ext.cross_entropy(np.zeros((2, 3), complex), np.array([0, 1])), TypeError,
                   r"logits: expected real numbers"),
}


@pytest.mark.parametrize("call, error, message", BAD.values(), ids=BAD.keys())
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
