"""lstm_ext.LSTM equals torch.nn.LSTM loaded with the same weights: outputs, states, all gradients.

Skipped when torch is not importable. float64 to 1e-10 against torch float64; float32 to 1e-5
against torch float64 (the float64 model is the truth, both float32 implementations round).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_parity, needs

import lstm_ext

torch = needs("torch")

TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def torch_run(module, x, state, dy, dstate):
    """Forward + backward through torch; returns every tensor lstm_ext also produces."""
    x_t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    state_t = None
    if state is not None:
        state_t = tuple(torch.tensor(s, dtype=torch.float64, requires_grad=True) for s in state)
    y, (h_n, c_n) = module(x_t, state_t)
    loss = (y * torch.tensor(dy)).sum()
    if dstate is not None:
        loss = loss + (h_n * torch.tensor(dstate[0])).sum() + (c_n * torch.tensor(dstate[1])).sum()
    loss.backward()
    out = {"y": y.detach().numpy(), "h_n": h_n.detach().numpy(), "c_n": c_n.detach().numpy(),
           "dx": x_t.grad.numpy()}
    if state is not None:
        out["dh0"], out["dc0"] = (s.grad.numpy() for s in state_t)
    for name, parameter in module.named_parameters():
        out["d" + name] = parameter.grad.numpy()
    return out


def ours_run(layer, x, state, dy, dstate):
    y, (h_n, c_n) = layer(x, state)
    dx, (dh0, dc0) = layer.backward(dy, dstate)
    out = {"y": y, "h_n": h_n, "c_n": c_n, "dx": dx}
    if state is not None:
        out["dh0"], out["dc0"] = dh0, dc0
    for name, grad in layer.grads.items():
        out["d" + name] = grad
    return out


CASES = {
    "small": dict(T=5, B=3, I=4, H=6),
    "T=1 B=1": dict(T=1, B=1, I=3, H=2),
    "odd": dict(T=11, B=5, I=13, H=17),
    "H=300": dict(T=6, B=2, I=20, H=300),
    "long T": dict(T=200, B=2, I=8, H=16),
    "batch_first": dict(T=7, B=4, I=5, H=8, batch_first=True),
    "no bias": dict(T=6, B=3, I=4, H=5, bias=False),
    "zero state": dict(T=6, B=3, I=4, H=5, state=False),
    "dstate None": dict(T=6, B=3, I=4, H=5, dstate=False),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_matches_torch_lstm(case, dtype):
    T, B, I, H = case["T"], case["B"], case["I"], case["H"]
    bias, batch_first = case.get("bias", True), case.get("batch_first", False)
    torch.manual_seed(T * 1000 + H)
    module = torch.nn.LSTM(I, H, bias=bias, batch_first=batch_first, dtype=torch.float64)
    layer = lstm_ext.LSTM(I, H, bias=bias, batch_first=batch_first, dtype=dtype)
    layer.load_state_dict({k: v.numpy() for k, v in module.state_dict().items()})

    rng = np.random.default_rng(T + B + I + H)
    x_shape = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(x_shape)
    dy = rng.standard_normal(x_shape[:2] + (H,))
    state = tuple(rng.standard_normal((1, B, H)) for _ in range(2)) if case.get("state", True) else None
    dstate = tuple(rng.standard_normal((1, B, H)) for _ in range(2)) if case.get("dstate", True) else None
    if dtype == np.float32:  # both sides see the same float32-representable inputs
        x, dy = x.astype(np.float32), dy.astype(np.float32)
        state = None if state is None else tuple(s.astype(np.float32) for s in state)
        dstate = None if dstate is None else tuple(s.astype(np.float32) for s in dstate)

    expected = torch_run(module, x, state, dy, dstate)
    actual = ours_run(layer, x, state, dy, dstate)
    assert set(actual) == set(expected)
    assert_parity("torch.nn.LSTM", dtype, actual, expected)


def test_state_dict_keys_and_shapes_equal_torch():
    module = torch.nn.LSTM(7, 9)
    layer = lstm_ext.LSTM(7, 9)
    ours = layer.state_dict()
    theirs = module.state_dict()
    assert list(ours) == list(theirs)
    for name in theirs:
        assert ours[name].shape == tuple(theirs[name].shape), name


def test_loads_a_torch_state_dict_of_tensors_directly():
    module = torch.nn.LSTM(3, 4, dtype=torch.float64)
    layer = lstm_ext.LSTM(3, 4, dtype=np.float64)
    layer.load_state_dict(module.state_dict())  # CPU tensors convert through NumPy's array protocol
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(layer.state_dict()[name], value.numpy())
