"""Optimizers: steps by hand, torch.optim over several steps, state dicts, gradient clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import needs

import lstm_ext


def test_sgd_steps_by_hand():
    p = np.array([1.0, -2.0])
    opt = lstm_ext.SGD({"p": p}, lr=0.1, momentum=0.9, weight_decay=0.5)
    g = np.array([0.2, 0.4])
    opt.step({"p": g})                       # b = g + wd·p; p -= lr·b
    b1 = g + 0.5 * np.array([1.0, -2.0])
    expected = np.array([1.0, -2.0]) - 0.1 * b1
    np.testing.assert_allclose(p, expected)
    opt.step({"p": g})                       # b = μ·b + (g + wd·p)
    b2 = 0.9 * b1 + (g + 0.5 * expected)
    np.testing.assert_allclose(p, expected - 0.1 * b2)


def test_adam_first_step_is_lr_times_sign():
    p = np.array([1.0, -2.0, 0.5])
    lstm_ext.Adam({"p": p}, lr=0.01).step({"p": np.array([3.0, -0.1, 0.0])})
    # m̂ = g, v̂ = g², so the step is lr·g/(|g| + eps)
    np.testing.assert_allclose(p, [1.0 - 0.01, -2.0 + 0.01, 0.5], atol=1e-9)


def test_adamw_decays_before_the_step():
    p = np.array([2.0])
    lstm_ext.AdamW({"p": p}, lr=0.1, weight_decay=0.5).step({"p": np.array([1.0])})
    np.testing.assert_allclose(p, [2.0 * (1 - 0.1 * 0.5) - 0.1], atol=1e-9)


CASES = {
    "sgd": ("SGD", dict(lr=0.05)),
    "sgd momentum dampening wd": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "sgd nesterov": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    "adam": ("Adam", dict(lr=0.01)),
    "adam wd betas": ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adamw": ("AdamW", dict(lr=0.01, weight_decay=0.1)),
}


@pytest.mark.parametrize("name", CASES)
def test_matches_torch_over_several_steps(name, rng):
    torch = needs("torch")
    kind, kwargs = CASES[name]
    start = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in start.items()} for _ in range(6)]
    ours = {k: v.copy() for k, v in start.items()}
    opt = getattr(lstm_ext, kind)(ours, **kwargs)
    theirs = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in start.items()}
    torch_opt = getattr(torch.optim, kind)(list(theirs.values()), **kwargs)
    for g in grads:
        opt.step(g)
        for k, t in theirs.items():
            t.grad = torch.tensor(g[k])
        torch_opt.step()
    for k in start:
        np.testing.assert_allclose(ours[k], theirs[k].detach().numpy(), rtol=1e-12, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("name", CASES)
def test_state_dict_resumes_exactly(name, rng):
    kind, kwargs = CASES[name]
    params = {"w": rng.standard_normal((2, 3))}
    grads = [{"w": rng.standard_normal((2, 3))} for _ in range(5)]
    straight = {"w": params["w"].copy()}
    opt = getattr(lstm_ext, kind)(straight, **kwargs)
    for g in grads:
        opt.step(g)
    first = {"w": params["w"].copy()}
    opt1 = getattr(lstm_ext, kind)(first, **kwargs)
    for g in grads[:2]:
        opt1.step(g)
    state = opt1.state_dict()
    opt2 = getattr(lstm_ext, kind)(first, lr=999.0)  # hyper-parameters come from the state
    opt2.load_state_dict(state)
    for g in grads[2:]:
        opt2.step(g)
    np.testing.assert_array_equal(first["w"], straight["w"])


def test_clip_grad_norm_matches_torch(rng):
    torch = needs("torch")
    grads = {"a": rng.standard_normal((3, 3)), "b": rng.standard_normal(5)}
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads.values()]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.tensor(g.copy())
    expected = torch.nn.utils.clip_grad_norm_(tensors, 0.5).item()
    total = lstm_ext.clip_grad_norm(grads, 0.5)
    assert total == pytest.approx(expected, rel=1e-12)
    for t, g in zip(tensors, grads.values()):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)
    small = {"a": np.array([0.1, 0.2])}
    assert lstm_ext.clip_grad_norm(small, 1.0) == pytest.approx(math.sqrt(0.05))
    np.testing.assert_array_equal(small["a"], [0.1, 0.2])


BAD = {
    "lr": (lambda: lstm_ext.Adam(lr=0.0), ValueError, r"lr: expected a value in \(0.0"),
    "lr type": (lambda: lstm_ext.SGD(lr="1"), TypeError, r"lr: expected a finite number, got str"),
    "betas": (lambda: lstm_ext.Adam(betas=(0.9, 1.0)), ValueError, r"betas\[1\]: expected a value in \[0.0, 1.0\)"),
    "nesterov": (lambda: lstm_ext.SGD(lr=0.1, nesterov=True), ValueError, r"nesterov: needs momentum > 0"),
    "params": (lambda: lstm_ext.SGD([1, 2], lr=0.1), TypeError, r"params: expected a non-empty dict"),
    "unbound": (lambda: lstm_ext.SGD(lr=0.1).step({}), RuntimeError, r"step: no parameters"),
    "missing grad": (lambda: lstm_ext.SGD({"w": np.zeros(2)}, lr=0.1).step({}), KeyError, r"missing gradients"),
    "grad shape": (lambda: lstm_ext.SGD({"w": np.zeros(2)}, lr=0.1).step({"w": np.zeros(3)}), ValueError,
                   r"grads\['w'\]: expected shape \(2,\), got \(3,\)"),
    "max_norm": (lambda: lstm_ext.clip_grad_norm({"a": np.ones(2)}, -1), ValueError, r"max_norm"),
    # found by the fuzz suite: a complex gradient lost its imaginary part with only a warning, and
    # clip_grad_norm raised AttributeError on a number
    "complex grad": (lambda: lstm_ext.SGD({"w": np.zeros(2)}, lr=0.1).step({"w": np.ones(2) * 1j}), TypeError,
                     r"grads\['w'\]: expected real numbers .* got dtype complex128"),
    "clip a number": (lambda: lstm_ext.clip_grad_norm({"a": 0}, 1.0), TypeError,
                      r"grads\['a'\]: expected a floating-point NumPy array \(scaled in place\), got int"),
    "clip read-only": (lambda: lstm_ext.clip_grad_norm([np.broadcast_to(np.ones(1), (3,))], 1.0), ValueError,
                       r"grads\[0\]: expected a writeable array"),
}


@pytest.mark.parametrize("call, error, message", BAD.values(), ids=BAD.keys())
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
