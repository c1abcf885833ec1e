"""The compiled layers equal the NumPy reference network: every cell, stacked, bidirectional,
projected, with lengths, batch_first and initial state, float64 and float32, outputs, final
states, dx, initial-state gradients and every parameter gradient."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

from conftest import assert_parity
import lstm_ext
from family import KINDS, make_layer, ours_run, random_inputs, reference_run

T, B, I, H = 6, 4, 3, 5
LENGTHS = np.array([3, 6, 1, 5])  # unsorted, with a length-1 sequence and a full one

COMBINATIONS = list(itertools.product(
    KINDS, (1, 2), (False, True), ("no lengths", "lengths"), (False, True), ("state", "zero state")))


def combination_id(c):
    kind, layers, bidirectional, lengths, batch_first, state = c
    return (f"{kind}-L{layers}-{'bi' if bidirectional else 'uni'}-{lengths}-"
            f"{'batch_first' if batch_first else 'time_major'}-{state}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("combination", COMBINATIONS, ids=[combination_id(c) for c in COMBINATIONS])
def test_layer_matches_reference(combination, dtype):
    kind_name, num_layers, bidirectional, lengths, batch_first, state = combination
    kind, extra = KINDS[kind_name]
    layer = make_layer(kind, I, H, dtype, seed=7, num_layers=num_layers, bidirectional=bidirectional,
                       batch_first=batch_first, **extra)
    rng = np.random.default_rng(zlib.crc32(combination_id(combination).encode()))
    x, state0, dy, dstate = random_inputs(layer, T, B, rng, with_state=state == "state")
    lengths = LENGTHS if lengths == "lengths" else None
    actual = ours_run(layer, x, state0, dy, dstate, lengths)
    expected = reference_run(layer, x, state0, dy, dstate, lengths)
    assert set(actual) == set(expected)
    assert_parity(f"reference: {kind_name}", dtype, actual, expected)


@pytest.mark.parametrize("kind_name", KINDS)
def test_padded_outputs_are_zero_and_final_state_is_the_last_valid_step(kind_name):
    kind, extra = KINDS[kind_name]
    layer = make_layer(kind, I, H, np.float64, num_layers=2, bidirectional=True, **extra).eval()
    x = np.random.default_rng(0).standard_normal((T, B, I))
    y, state_n = layer(x, lengths=LENGTHS)
    h_n = state_n[0] if kind == "LSTM" else state_n
    for b, length in enumerate(LENGTHS):
        assert not y[length:, b].any()
        # Run alone over its valid steps, the sequence gives the same output and final state.
        y_b, state_b = layer(x[:length, b:b + 1])
        np.testing.assert_allclose(y[:length, b:b + 1], y_b, rtol=0, atol=1e-14)
        h_b = state_b[0] if kind == "LSTM" else state_b
        np.testing.assert_allclose(h_n[:, b:b + 1], h_b, rtol=0, atol=1e-14)


@pytest.mark.parametrize("kind_name", KINDS)
def test_lengths_all_equal_to_T_is_no_lengths(kind_name):
    kind, extra = KINDS[kind_name]
    layer = make_layer(kind, I, H, np.float32, num_layers=2, bidirectional=True, **extra)
    x, state, dy, dstate = random_inputs(layer, T, B, np.random.default_rng(1))
    without = ours_run(layer, x, state, dy, dstate)
    with_full = ours_run(layer, x, state, dy, dstate, lengths=np.full(B, T))
    for name, value in without.items():
        np.testing.assert_array_equal(with_full[name], value, err_msg=name)


@pytest.mark.parametrize("op, gates", [("lstm", 4), ("gru", 3), ("rnn", 1)])
def test_backward_reads_the_input_from_the_workspace(op, gates):
    """The workspace keeps the input: a backward given other values of x (same shape) gives the
    same gradients, and so does one after the caller has overwritten x."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, B, I))
    w_ih, w_hh = rng.standard_normal((gates * H, I)), rng.standard_normal((gates * H, H))
    dy = rng.standard_normal((T, B, H))
    forward, backward = getattr(lstm_ext, op + "_forward"), getattr(lstm_ext, op + "_backward")
    ws = forward(x, w_ih, w_hh, training=True, lengths=LENGTHS).workspace
    args = (dy, None, None) if op == "lstm" else (dy, None)
    first = backward(*args, x, w_ih, w_hh, ws, lengths=LENGTHS)
    x[...] = 7.0
    again = backward(*args, x, w_ih, w_hh, ws, lengths=LENGTHS)
    for name, value in first._asdict().items():
        if value is not None:
            np.testing.assert_array_equal(getattr(again, name), value, err_msg=name)
    with pytest.raises(ValueError, match=r"x: expected shape \(T, B, I\)"):
        backward(*args, x[:, :, :2], w_ih, w_hh, ws, lengths=LENGTHS)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind_name", KINDS)
def test_a_large_batch_matches_reference_when_the_team_splits_it(kind_name, threads, dtype):
    """From 16 sequences per member on, a team shares the batch instead of the units (no barrier
    per step): the same results, with lengths, both directions, in training and in eval mode."""
    kind, extra = KINDS[kind_name]
    before = lstm_ext.get_num_threads()
    lstm_ext.set_num_threads(threads)
    try:
        layer = make_layer(kind, 6, 20, dtype, seed=3, bidirectional=True, **extra)
        rng = np.random.default_rng(11)
        T_big, B_big = 5, 37
        lengths = rng.integers(1, T_big + 1, size=B_big)
        x, state0, dy, dstate = random_inputs(layer, T_big, B_big, rng)
        actual = ours_run(layer, x, state0, dy, dstate, lengths)
        expected = reference_run(layer, x, state0, dy, dstate, lengths)
        assert_parity(f"reference, B = {B_big}: {kind_name}", dtype, actual, expected)
        layer.eval()
        y_eval, _ = layer(x, state0, lengths=lengths)
        np.testing.assert_array_equal(y_eval, actual["y"])  # eval mode: the same bits as training's forward
    finally:
        lstm_ext.set_num_threads(before)
