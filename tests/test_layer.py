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


def test_a_parameter_set_as_an_attribute_is_checked_and_used():
    layer = lstm_ext.LSTM(I, H, seed=0).eval()
    parameter = layer.weight_hh_l0
    layer.weight_hh_l0 = np.zeros((4 * H, H))  # copied into the parameter (an optimizer holds it)
    assert layer.weight_hh_l0 is parameter and not parameter.any()
    reference = lstm_ext.LSTM(I, H, seed=0).eval()
    reference.load_state_dict({**reference.state_dict(), "weight_hh_l0": np.zeros((4 * H, H))})
    np.testing.assert_array_equal(layer(make_input())[0], reference(make_input())[0])
    with pytest.raises(ValueError, match=r"weight_hh_l0: expected shape \(20, 5\), got \(5, 5\)"):
        layer.weight_hh_l0 = np.ones((H, H))
    with pytest.raises(TypeError, match="weight_hh_l0"):
        layer.weight_hh_l0 = "zeros"
    assert not parameter.any()


# One rule for every constructor argument of a built layer: what decides the parameters is fixed
# (AttributeError naming how to build another layer), the rest is checked as the constructor
# checks it and used from the next forward.
FIXED = {"LSTM": ["input_size", "hidden_size", "num_layers", "bias", "bidirectional", "dtype", "seed", "proj_size",
                  "peephole", "layer_norm"],
         "GRU": ["input_size", "hidden_size", "num_layers", "bias", "bidirectional", "dtype", "seed", "layer_norm"],
         "RNN": ["input_size", "hidden_size", "num_layers", "bias", "bidirectional", "dtype", "seed"]}
SETTABLE = {"LSTM": {"dropout": 0.25, "batch_first": True, "zoneout": (0.3, 0.4), "recurrent_dropout": 0.5},
            "GRU": {"dropout": 0.25, "batch_first": True},
            "RNN": {"dropout": 0.25, "batch_first": True, "nonlinearity": "relu"}}


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_every_constructor_argument_is_fixed_or_settable(kind):
    layer = getattr(lstm_ext, kind)(I, H, num_layers=2, seed=0)
    config = layer.config()
    assert set(config) == set(FIXED[kind]) | set(SETTABLE[kind])  # every argument has its rule
    for name in FIXED[kind]:
        with pytest.raises(AttributeError, match=rf"{kind}\.{name} is fixed once the {kind} is built .*"
                                                 rf"lstm_ext\.{kind}\(\*\*{{\*\*old\.config\(\), '{name}': \.\.\.}}\)"):
            setattr(layer, name, config[name])
    assert layer.config() == config


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_a_setting_is_used_from_the_next_forward_and_shown_by_repr(kind):
    # A layer whose settable arguments are set after it is built computes what a layer built with
    # them computes (the same seed: the same weights and masks), and repr and config say them.
    settings = SETTABLE[kind]
    changed = getattr(lstm_ext, kind)(I, H, num_layers=2, dtype=np.float64, seed=3)
    for name, value in settings.items():
        setattr(changed, name, value)
    built = getattr(lstm_ext, kind)(I, H, num_layers=2, dtype=np.float64, seed=3, **settings)
    assert repr(changed) == repr(built) and changed.config() == built.config()
    x = make_input(1, (B, T, I))  # batch_first
    y, _ = changed(x)
    np.testing.assert_array_equal(y, built(x)[0])
    dy = make_input(2, y.shape)
    np.testing.assert_array_equal(changed.backward(dy)[0], built.backward(dy)[0])
    plain = getattr(lstm_ext, kind)(I, H, num_layers=2, dtype=np.float64, seed=3)
    assert not np.array_equal(plain(x.swapaxes(0, 1))[0].swapaxes(0, 1), y)


def test_backward_runs_with_the_settings_of_its_forward():
    layer = lstm_ext.LSTM(I, H, dtype=np.float64, seed=4, zoneout=0.3)
    twin = lstm_ext.LSTM(I, H, dtype=np.float64, seed=4, zoneout=0.3)
    x = make_input(3)
    y, _ = layer(x)
    twin(x)
    layer.zoneout = 0.0
    layer.batch_first = True  # dy stays (T, B, ·), the forward's layout
    dy = make_input(4, y.shape)
    np.testing.assert_array_equal(layer.backward(dy)[0], twin.backward(dy)[0])


@pytest.mark.parametrize("name, value, error, message", [
    ("dropout", 1.0, ValueError, r"dropout: expected a probability in \[0, 1\), got 1.0"),
    ("dropout", "0.5", TypeError, "dropout: expected a probability"),
    ("batch_first", "no", TypeError, "batch_first: expected True or False, got str 'no'"),
    ("batch_first", 1, TypeError, "batch_first: expected True or False, got int 1"),
    ("zoneout", (0.5, 1.0), ValueError, r"zoneout\[1\] \(z_h\): expected a probability in \[0, 1\), got 1.0"),
    ("zoneout", "0.5", TypeError, "zoneout: expected a pair"),
    ("recurrent_dropout", -0.1, ValueError, "recurrent_dropout: expected a probability"),
])
def test_a_bad_setting_is_refused_and_changes_nothing(name, value, error, message):
    layer = lstm_ext.LSTM(I, H, num_layers=2, seed=0)
    before = (repr(layer), layer.config())
    with pytest.raises(error, match=message):
        setattr(layer, name, value)
    assert (repr(layer), layer.config()) == before
    assert np.isfinite(layer.train()(make_input())[0]).all()


def test_the_rnns_nonlinearity_can_be_set_and_a_bad_one_is_refused():
    layer = lstm_ext.RNN(I, H, seed=0)
    with pytest.raises(ValueError, match="nonlinearity: expected 'tanh' or 'relu', got 'sigmoid'"):
        layer.nonlinearity = "sigmoid"
    layer.nonlinearity = "relu"
    assert (layer(make_input())[0] >= 0).all() and "nonlinearity='relu'" in repr(layer)


def test_setting_dropout_on_one_layer_warns_as_the_constructor_does():
    layer = lstm_ext.LSTM(I, H)
    with pytest.warns(UserWarning, match="with num_layers=1 it has no effect"):
        layer.dropout = 0.5


@pytest.mark.parametrize("argument", ["bias", "batch_first", "bidirectional"])
@pytest.mark.parametrize("value", ["false", "no", 0, 1.0, None])
def test_the_constructors_booleans_are_booleans(argument, value):
    with pytest.raises(TypeError, match=f"{argument}: expected True or False, got"):
        lstm_ext.LSTM(I, H, **{argument: value})


@pytest.mark.parametrize("make, fixed", [
    (lambda: lstm_ext.Linear(3, 2, seed=0), ["in_features", "out_features", "has_bias", "dtype", "seed"]),
    (lambda: lstm_ext.Embedding(7, 2, seed=0), ["num_embeddings", "embedding_dim", "dtype", "seed"]),
])
def test_the_other_modules_follow_the_same_rule(make, fixed):
    module = make()
    for name in fixed:
        with pytest.raises(AttributeError, match=f"{type(module).__name__}.{name} is fixed"):
            setattr(module, name, getattr(module, name))
    with pytest.raises(ValueError, match="weight: expected shape"):
        module.weight = np.zeros((1, 1))


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
