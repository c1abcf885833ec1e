"""Linear, Embedding, LastStep and the activations: values, gradients by finite differences, torch."""

from __future__ import annotations

import numpy as np
import pytest

import lstm_ext
from conftest import numeric_gradient, needs
from lstm_ext.testing import relative_error


def test_linear_gradients_over_any_leading_shape(rng):
    layer = lstm_ext.Linear(4, 3, dtype=np.float64, seed=0)
    x, dy = rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 3))

    def loss(x_value, weight=None, bias=None):
        probe = lstm_ext.Linear(4, 3, dtype=np.float64, seed=0)
        if weight is not None:
            probe.weight[...] = weight
        if bias is not None:
            probe.bias[...] = bias
        return float(np.sum(probe(x_value) * dy))

    y = layer(x)
    np.testing.assert_allclose(y, x @ layer.weight.T + layer.bias)
    dx = layer.backward(dy)
    assert relative_error(dx, numeric_gradient(loss, x)) < 1e-8
    assert relative_error(layer.grads["weight"], numeric_gradient(lambda w: loss(x, weight=w), layer.weight.copy())) < 1e-8
    assert relative_error(layer.grads["bias"], numeric_gradient(lambda b: loss(x, bias=b), layer.bias.copy())) < 1e-8


def test_linear_matches_torch(rng):
    torch = needs("torch")
    layer = lstm_ext.Linear(6, 2, dtype=np.float64, seed=3)
    module = torch.nn.Linear(6, 2, dtype=torch.float64)
    module.load_state_dict({k: torch.tensor(v) for k, v in layer.state_dict().items()})
    x, dy = rng.standard_normal((4, 6)), rng.standard_normal((4, 2))
    xt = torch.tensor(x, requires_grad=True)
    (module(xt) * torch.tensor(dy)).sum().backward()
    dx = (layer(x), layer.backward(dy))[1]
    assert relative_error(dx, xt.grad.numpy()) < 1e-12
    assert relative_error(layer.grads["weight"], module.weight.grad.numpy()) < 1e-12
    assert relative_error(layer.grads["bias"], module.bias.grad.numpy()) < 1e-12
    assert sorted(layer.state_dict()) == sorted(module.state_dict())


def test_linear_keeps_its_input_and_checks_shapes():
    layer = lstm_ext.Linear(2, 1, dtype=np.float64, seed=0)
    x = np.ones((3, 2))
    layer(x)
    x[...] = 5.0  # the caller reuses its buffer: backward still sees the input of the forward
    layer.backward(np.ones((3, 1)))
    np.testing.assert_array_equal(layer.grads["weight"], [[3.0, 3.0]])
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., in_features\) = \(\.\.\., 2\), got \(3, 4\)"):
        layer(np.ones((3, 4)))
    with pytest.raises(RuntimeError, match="no training-mode forward"):
        layer.backward(np.ones((3, 1)))
    assert lstm_ext.Linear(2, 1, bias=False).config()["bias"] is False


def test_embedding_gathers_and_accumulates(rng):
    emb = lstm_ext.Embedding(5, 3, dtype=np.float64, seed=0)
    tokens = np.array([[1, 1, 4], [0, 1, 2]])
    out = emb(tokens)
    np.testing.assert_array_equal(out, emb.weight[tokens])
    dy = rng.standard_normal((2, 3, 3))
    assert emb.backward(dy) is None
    np.testing.assert_allclose(emb.grads["weight"][1], dy[0, 0] + dy[0, 1] + dy[1, 1])
    assert not emb.grads["weight"][3].any()
    with pytest.raises(ValueError, match=r"tokens: expected integers in \[0, 5\), got 5 at index \(0,\)"):
        emb(np.array([5]))
    with pytest.raises(TypeError, match=r"tokens: expected integers"):
        emb(np.array([1.0]))


def test_last_step_picks_each_sequences_last_valid_step(rng):
    last = lstm_ext.LastStep(dtype=np.float64)
    y = rng.standard_normal((3, 4, 2))
    out = last(y, lengths=np.array([4, 1, 2]))
    np.testing.assert_array_equal(out, np.stack([y[0, 3], y[1, 0], y[2, 1]]))
    d = last.backward(np.ones((3, 2)))
    assert d.shape == y.shape and d.sum() == 6 and d[1, 0].all() and not d[1, 1:].any()
    np.testing.assert_array_equal(lstm_ext.LastStep(dtype=np.float64)(y), y[:, -1])
    with pytest.raises(ValueError, match=r"lengths: expected every length in \[1, T\] = \[1, 4\], got 0 at index 0"):
        last(y, lengths=np.array([0, 1, 2]))
    with pytest.raises(TypeError, match=r"lengths: expected integers \(one valid length per sequence\), got dtype float64"):
        last(y, lengths=[1.5, 1, 2])  # found by the fuzz suite: an IndexError before
    with pytest.raises(ValueError, match=r"y: expected at least one step \(B, T, F\) with T >= 1, got shape \(3, 0, 2\)"):
        last(np.zeros((3, 0, 2)))


@pytest.mark.parametrize("kind", ["Tanh", "ReLU", "Sigmoid"])
def test_activation_gradients(kind, rng):
    x, dy = rng.standard_normal((3, 4)) + 0.1, rng.standard_normal((3, 4))
    act = getattr(lstm_ext, kind)(dtype=np.float64)
    act(x)
    numeric = numeric_gradient(lambda v: float(np.sum(getattr(lstm_ext, kind)(dtype=np.float64)(v) * dy)), x)
    assert relative_error(act.backward(dy), numeric) < 1e-8
    assert np.isfinite(lstm_ext.Sigmoid(dtype=np.float64)(np.array([-1000.0, 1000.0]))).all()
