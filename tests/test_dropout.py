"""Dropout between stacked layers: training mode only, reproducible from the layer's seed, and the
backward pass goes through the same mask as the forward."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_parity
from family import KINDS, make_layer, ours_run, random_inputs, reference_run
from lstm_ext.testing import relative_error

T, B, I, H = 5, 3, 4, 6
P = 0.4


def dropout_layer(kind_name, dtype=np.float64, seed=11, dropout=P):
    kind, extra = KINDS[kind_name]
    return make_layer(kind, I, H, dtype, seed=seed, num_layers=3, bidirectional=True, dropout=dropout, **extra)


@pytest.mark.parametrize("kind_name", KINDS)
def test_eval_mode_is_deterministic_and_equals_no_dropout(kind_name):
    layer = dropout_layer(kind_name).eval()
    plain = dropout_layer(kind_name, dropout=0.0).eval()
    x = np.random.default_rng(0).standard_normal((T, B, I))
    y1, _ = layer(x)
    y2, _ = layer(x)
    y_plain, _ = plain(x)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(y1, y_plain)


@pytest.mark.parametrize("kind_name", KINDS)
def test_training_mode_is_reproducible_from_the_seed(kind_name):
    x, state, dy, dstate = random_inputs(dropout_layer(kind_name), T, B, np.random.default_rng(1))
    first = ours_run(dropout_layer(kind_name, seed=5), x, state, dy, dstate)
    again = ours_run(dropout_layer(kind_name, seed=5), x, state, dy, dstate)
    for name, value in first.items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)
    # Another seed draws other masks; the same layer draws new masks at every forward.
    other = ours_run(dropout_layer(kind_name, seed=6), x, state, dy, dstate)
    assert not np.array_equal(other["y"], first["y"])
    layer = dropout_layer(kind_name, seed=5)
    y1, _ = layer(x, state)
    y2, _ = layer(x, state)
    assert not np.array_equal(y1, y2)
    # Without dropout, training and eval agree.
    plain = dropout_layer(kind_name, dropout=0.0)
    np.testing.assert_array_equal(plain(x, state)[0], plain.eval()(x, state)[0])


def documented_masks(layer, T, B):
    """The masks of a layer's first training forward, drawn as the README documents: a NumPy
    Generator on SeedSequence(seed, spawn_key=(1,)), one (T, B, D*H_out) draw per dropped layer,
    keep where random() >= p, scaled by 1 / (1 - p)."""
    rng = np.random.default_rng(np.random.SeedSequence(layer.seed, spawn_key=(1,)))
    shape = (T, B, layer.num_directions * layer.output_size)
    return [(rng.random(shape) >= layer.dropout) / (1.0 - layer.dropout) for _ in range(layer.num_layers - 1)]


@pytest.mark.parametrize("kind_name", KINDS)
def test_forward_and_backward_use_the_same_mask(kind_name):
    layer = dropout_layer(kind_name)
    lengths = np.array([5, 2, 4])
    x, state, dy, dstate = random_inputs(layer, T, B, np.random.default_rng(2))
    masks = documented_masks(layer, T, B)
    dropped = np.mean([np.mean(m == 0) for m in masks])
    assert 0.25 < dropped < 0.55  # about P of the units are dropped
    actual = ours_run(layer, x, state, dy, dstate, lengths)
    expected = reference_run(layer, x, state, dy, dstate, lengths, dropout_masks=masks)
    assert_parity(f"dropout: {kind_name}", np.float64, actual, expected)


@pytest.mark.parametrize("kind_name", ["LSTM proj", "GRU", "RNN tanh"])
def test_finite_differences_through_a_fixed_mask(kind_name):
    """Each evaluation uses a fresh layer with the same seed, hence the same first mask."""
    eps = 1e-6
    x, state, dy, dstate = random_inputs(dropout_layer(kind_name), T, B, np.random.default_rng(3))
    weights = dropout_layer(kind_name).state_dict()

    def loss(x_value, weights_value):
        layer = dropout_layer(kind_name)
        layer.load_state_dict(weights_value)
        y, state_n = layer(x_value, state)
        parts = state_n if layer.mode == "LSTM" else (state_n,)
        dparts = dstate if layer.mode == "LSTM" else (dstate,)
        return float(np.sum(y * dy) + sum(np.sum(p * d) for p, d in zip(parts, dparts)))

    analytic = ours_run(dropout_layer(kind_name), x, state, dy, dstate)
    numeric_dx = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        numeric_dx[index] = (loss(up, weights) - loss(down, weights)) / (2 * eps)
    assert relative_error(analytic["dx"], numeric_dx) < 1e-7

    name = "weight_hh_l1_reverse"  # a layer whose input went through the first mask
    numeric = np.zeros_like(weights[name])
    for index in np.ndindex(numeric.shape):
        up = {k: v.copy() for k, v in weights.items()}
        down = {k: v.copy() for k, v in weights.items()}
        up[name][index] += eps
        down[name][index] -= eps
        numeric[index] = (loss(x, up) - loss(x, down)) / (2 * eps)
    assert relative_error(analytic["d" + name], numeric) < 1e-7


def test_dropout_with_one_layer_warns_as_torch_does():
    with pytest.warns(UserWarning, match="num_layers=1"):
        make_layer("LSTM", I, H, np.float32, dropout=0.2)
