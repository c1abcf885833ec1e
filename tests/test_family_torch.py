"""The layers equal torch.nn.LSTM / GRU / RNN built with the same arguments, using torch's own
weights (lstm_ext.from_torch): outputs, final states, dx, initial-state gradients and every
parameter gradient, with lengths through torch's pack_padded_sequence(enforce_sorted=False).

Skipped when torch is not importable. The truth is the torch module in float64; the float32
layer holds the same (float32) weights and is held to 1e-5.
"""

from __future__ import annotations

import copy
import itertools
import zlib

import numpy as np
import pytest

from conftest import assert_parity, needs
from family import KINDS, ours_run, random_inputs, torch_run

import lstm_ext

torch = needs("torch")

T, B, I, H = 7, 5, 4, 6
LENGTH_ORDERS = {
    "no lengths": None,
    "random order": np.array([4, 7, 1, 2, 6]),
    "descending": np.array([7, 6, 4, 3, 1]),
    "ascending": np.array([1, 2, 5, 7, 7]),
}

COMBINATIONS = list(itertools.product(
    KINDS, (1, 2), (False, True), LENGTH_ORDERS, (False, True), ("state", "zero state")))


def combination_id(c):
    kind, layers, bidirectional, lengths, batch_first, state = c
    return (f"{kind}-L{layers}-{'bi' if bidirectional else 'uni'}-{lengths}-"
            f"{'batch_first' if batch_first else 'time_major'}-{state}")


def torch_module(kind, extra, dtype, **config):
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    return getattr(torch.nn, kind)(I, H, dtype=torch_dtype, **extra, **config)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("combination", COMBINATIONS, ids=[combination_id(c) for c in COMBINATIONS])
def test_layer_matches_torch(combination, dtype):
    kind_name, num_layers, bidirectional, lengths_name, batch_first, state = combination
    kind, extra = KINDS[kind_name]
    seed = zlib.crc32(combination_id(combination).encode())
    torch.manual_seed(seed)
    module = torch_module(kind, extra, dtype, num_layers=num_layers, bidirectional=bidirectional,
                          batch_first=batch_first)
    layer = lstm_ext.from_torch(module)
    assert layer.dtype == dtype and type(layer).__name__ == kind

    x, state0, dy, dstate = random_inputs(layer, T, B, np.random.default_rng(seed), with_state=state == "state")
    lengths = LENGTH_ORDERS[lengths_name]
    expected = torch_run(copy.deepcopy(module).double(), x, state0, dy, dstate, lengths)
    actual = ours_run(layer, x, state0, dy, dstate, lengths)
    assert set(expected) <= set(actual)
    assert_parity(f"torch.nn.{kind_name}", dtype, actual, expected)


@pytest.mark.parametrize("kind_name", KINDS)
def test_dropout_zero_equals_torch_in_eval_mode_with_dropout(kind_name):
    """Dropout acts in training mode only: in eval mode a dropout layer equals torch's eval module."""
    kind, extra = KINDS[kind_name]
    torch.manual_seed(0)
    module = torch_module(kind, extra, np.float64, num_layers=3, dropout=0.5).eval()
    layer = lstm_ext.from_torch(module)
    assert not layer.training and layer.dropout == 0.5
    x = np.random.default_rng(0).standard_normal((T, B, I))
    y, _ = layer(x)
    with torch.no_grad():
        expected, _ = module(torch.tensor(x))
    assert_parity(f"torch.nn.{kind_name}", np.float64, {"y": y}, {"y": expected.numpy()})


@pytest.mark.parametrize("kind_name", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_to_torch_round_trip(kind_name, dtype):
    kind, extra = KINDS[kind_name]
    layer = getattr(lstm_ext, kind)(I, H, num_layers=2, bidirectional=True, batch_first=True, dropout=0.25,
                                     dtype=dtype, seed=3, **extra)
    module = layer.eval().to_torch()
    assert isinstance(module, getattr(torch.nn, kind)) and not module.training
    assert (module.num_layers, module.bidirectional, module.batch_first, module.dropout) == (2, True, True, 0.25)
    assert next(module.parameters()).dtype == (torch.float32 if dtype == np.float32 else torch.float64)
    assert list(module.state_dict()) == list(layer.state_dict())
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), layer.state_dict()[name])
    back = lstm_ext.from_torch(module)
    assert repr(back) == repr(layer)
    for name, value in back.state_dict().items():
        np.testing.assert_array_equal(value, layer.state_dict()[name])
    if kind == "RNN":
        assert module.nonlinearity == layer.nonlinearity == back.nonlinearity


def test_from_torch_copies_and_refuses_other_modules():
    module = torch.nn.LSTM(3, 4)
    layer = lstm_ext.from_torch(module)
    with torch.no_grad():
        module.weight_hh_l0.fill_(1.0)
    assert not np.all(layer.weight_hh_l0 == 1.0)  # a copy, not a view of torch's memory
    with pytest.raises(TypeError, match="module: expected a torch.nn.LSTM, GRU or RNN, got Linear"):
        lstm_ext.from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(TypeError, match="layer: expected an lstm_ext LSTM, GRU or RNN, got dict"):
        lstm_ext.to_torch({})
