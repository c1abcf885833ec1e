"""The LSTM layer's API: shapes, initialisation, state dicts, train/eval, gradient accumulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lstm_ext
from lstm_ext.testing import relative_error

T, B, I, H = 6, 3, 4, 5


def make_input(seed=0, shape=(T, B, I)):
    return np.random.default_rng(seed).standard_normal(shape)


def test_shapes_defaults_and_repr():
    layer = lstm_ext.LSTM(I, H)
    assert layer.training and layer.dtype == np.float32 and layer.bias and not layer.batch_first
    y, (h_n, c_n) = layer(make_input())
    assert y.shape == (T, B, H) and h_n.shape == (1, B, H) and c_n.shape == (1, B, H)
    assert y.dtype == h_n.dtype == c_n.dtype == np.float32
    np.testing.assert_array_equal(h_n[0], y[-1])
    assert repr(layer) == "LSTM(4, 5, dtype=float32)"
    assert repr(lstm_ext.LSTM(4, 5, bias=False, batch_first=True, dtype=np.float64)) == \
        "LSTM(4, 5, bias=False, batch_first=True, dtype=float64)"


def test_initialisation_is_pytorch_uniform_and_reproducible():
    layer = lstm_ext.LSTM(30, 40, seed=3)
    bound = 1 / math.sqrt(40)
    for name, value in layer.state_dict().items():
        assert value.min() >= -bound and value.max() <= bound, name
    weights = layer.weight_hh_l0
    assert weights.min() < -0.95 * bound and weights.max() > 0.95 * bound  # spans the interval
    assert abs(weights.mean()) < 0.05 * bound

    same = lstm_ext.LSTM(30, 40, seed=3).state_dict()
    other = lstm_ext.LSTM(30, 40, seed=4).state_dict()
    as64 = lstm_ext.LSTM(30, 40, seed=3, dtype=np.float64).state_dict()
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(same[name], value)
        assert not np.array_equal(other[name], value)
        np.testing.assert_array_equal(as64[name].astype(np.float32), value)  # same draw in either dtype


def test_state_dict_round_trip_and_copies():
    source = lstm_ext.LSTM(I, H, seed=1)
    target = lstm_ext.LSTM(I, H, seed=2)
    weights_before = target.weight_ih_l0
    target.load_state_dict(source.state_dict())
    assert target.weight_ih_l0 is weights_before  # loaded in place: references stay valid
    x = make_input()
    np.testing.assert_array_equal(target.eval()(x)[0], source.eval()(x)[0])

    copy = source.state_dict()
    copy["weight_hh_l0"][...] = 0
    assert np.any(source.weight_hh_l0 != 0)  # state_dict hands out copies


def test_parameters_are_live_attributes():
    layer = lstm_ext.LSTM(I, H, seed=0).eval()
    x = make_input()
    before = layer(x)[0]
    layer.bias_hh_l0 += 1.0
    assert not np.array_equal(layer(x)[0], before)
    assert layer.named_parameters()["bias_hh_l0"] is layer.bias_hh_l0


def test_load_state_dict_errors_change_nothing():
    layer = lstm_ext.LSTM(I, H, seed=0)
    good = layer.state_dict()
    original = layer.state_dict()

    missing = {k: v for k, v in good.items() if k != "bias_hh_l0"}
    with pytest.raises(KeyError, match="bias_hh_l0"):
        layer.load_state_dict(missing)
    with pytest.raises(KeyError, match="weight_hr_l0"):
        layer.load_state_dict({**good, "weight_hr_l0": np.zeros((2, H))})
    with pytest.raises(ValueError, match=r"weight_hh_l0.*\(20, 5\).*\(20, 6\)"):
        layer.load_state_dict({**good, "weight_ih_l0": good["weight_ih_l0"] + 1, "weight_hh_l0": np.zeros((20, 6))})
    with pytest.raises(TypeError, match="bias_ih_l0.*complex"):
        layer.load_state_dict({**good, "bias_ih_l0": good["bias_ih_l0"] + 0j})
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, original[name], err_msg=name)


def test_eval_keeps_nothing_and_computes_the_same():
    layer = lstm_ext.LSTM(I, H, seed=0)
    x = make_input()
    y_train, _ = layer(x)
    assert layer.train() is layer and layer.eval() is layer and not layer.training
    y_eval, _ = layer(x)
    np.testing.assert_array_equal(y_eval, y_train)
    assert layer._saved is None
    with pytest.raises(RuntimeError, match="training-mode forward"):
        layer.backward(np.ones_like(y_eval))


def test_grads_accumulate_until_zero_grad():
    layer = lstm_ext.LSTM(I, H, seed=0, dtype=np.float64)
    x, dy = make_input(1), make_input(2, (T, B, H))
    layer(x)
    layer.backward(dy)
    once = {k: v.copy() for k, v in layer.grads.items()}
    assert all(np.any(g != 0) for g in once.values())
    layer(x)
    layer.backward(dy)
    for name, grad in layer.grads.items():
        np.testing.assert_allclose(grad, 2 * once[name], rtol=1e-14, err_msg=name)
    with pytest.raises(RuntimeError):
        layer.backward(dy)  # one backward per forward
    layer.zero_grad()
    assert all(not np.any(g) for g in layer.grads.values())


def test_backward_matches_functional_and_dy_none_is_zeros():
    layer = lstm_ext.LSTM(I, H, seed=0, dtype=np.float64)
    x = make_input(1)
    state = (make_input(3, (1, B, H)), make_input(4, (1, B, H)))
    dstate = (make_input(5, (1, B, H)), make_input(6, (1, B, H)))
    layer(x, state)
    dx, (dh0, dc0) = layer.backward(None, dstate)
    w = layer.named_parameters()
    out = lstm_ext.lstm_forward(x, w["weight_ih_l0"], w["weight_hh_l0"], w["bias_ih_l0"], w["bias_hh_l0"],
                                state[0][0], state[1][0], training=True)
    grads = lstm_ext.lstm_backward(np.zeros((T, B, H)), dstate[0][0], dstate[1][0], x, w["weight_ih_l0"],
                                   w["weight_hh_l0"], out.workspace)
    np.testing.assert_array_equal(dx, grads.dx)
    np.testing.assert_array_equal(dh0[0], grads.dh0)
    np.testing.assert_array_equal(dc0[0], grads.dc0)
    np.testing.assert_array_equal(layer.grads["weight_hh_l0"], grads.dw_hh)
    np.testing.assert_array_equal(layer.grads["bias_ih_l0"], grads.db_ih)


def test_batch_first_is_a_transpose():
    time_major = lstm_ext.LSTM(I, H, seed=0, dtype=np.float64)
    batch_major = lstm_ext.LSTM(I, H, seed=0, dtype=np.float64, batch_first=True)
    x, dy = make_input(1), make_input(2, (T, B, H))
    y, (h_n, _) = time_major(x)
    dx, _ = time_major.backward(dy)
    y_bf, (h_n_bf, _) = batch_major(x.swapaxes(0, 1))
    dx_bf, _ = batch_major.backward(dy.swapaxes(0, 1))
    assert y_bf.shape == (B, T, H) and dx_bf.shape == (B, T, I)
    np.testing.assert_array_equal(y_bf, y.swapaxes(0, 1))
    np.testing.assert_array_equal(h_n_bf, h_n)
    np.testing.assert_array_equal(dx_bf, dx.swapaxes(0, 1))
    for name in time_major.grads:
        np.testing.assert_array_equal(batch_major.grads[name], time_major.grads[name])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_array_likes_are_converted(dtype):
    layer = lstm_ext.LSTM(I, H, seed=0, dtype=dtype).eval()
    x = np.round(make_input(1) * 4)  # integral values, exact in every type below
    expected = layer(x.astype(dtype))[0]
    fortran = np.asfortranarray(x)
    strided = np.repeat(x, 2, axis=2)[:, :, ::2]
    for variant in (x.tolist(), x.astype(np.int64), x.astype(np.float32), x.astype(np.float64), fortran, strided,
                    x.astype(np.int16)):
        y = layer(variant)[0]
        assert y.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(y, expected)


def test_backward_sees_the_forward_inputs_and_weights_as_they_were():
    layer = lstm_ext.LSTM(I, H, seed=0, dtype=np.float64)
    x, dy = make_input(1), make_input(2, (T, B, H))
    layer(x)
    expected = layer.backward(dy)[0]
    expected_grads = {k: v.copy() for k, v in layer.grads.items()}
    layer.zero_grad()

    layer(x)
    x += 1.0                    # the caller reuses its input buffer
    layer.weight_hh_l0 *= 0.5   # an optimiser step between forward and backward
    dx = layer.backward(dy)[0]
    assert relative_error(dx, expected) == 0
    for name, grad in layer.grads.items():
        np.testing.assert_array_equal(grad, expected_grads[name], err_msg=name)
