"""Sequential: construction, gradients of the whole model, fit, evaluate, predict, early stopping,
truncated BPTT, reproducibility, progress output."""

from __future__ import annotations

import numpy as np
import pytest

import lstm_ext
from lstm_ext.testing import relative_error
from lstm_ext.training import loss_and_gradient


def regression_data(n=64, T=8, seed=0):
    """y = the mean of the first half of each sequence (memory over a few steps)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, 2)).astype(np.float32)
    y = X[:, : T // 2, :1].mean(axis=1)
    return X, y.astype(np.float32)


def small_model(dtype=np.float32, seed=0, cell="LSTM", dropout=0.0, layers=1):
    recurrent = getattr(lstm_ext, cell)(2, 8, num_layers=layers, dropout=dropout, batch_first=True, dtype=dtype,
                                        seed=seed)
    return lstm_ext.Sequential(recurrent, lstm_ext.LastStep(dtype=dtype), lstm_ext.Tanh(dtype=dtype),
                               lstm_ext.Linear(8, 1, dtype=dtype, seed=seed))


def test_construction_errors():
    with pytest.raises(ValueError, match="batch_first=True"):
        lstm_ext.Sequential(lstm_ext.LSTM(2, 3))
    with pytest.raises(ValueError, match="must be the first layer"):
        lstm_ext.Sequential(lstm_ext.Linear(2, 2), lstm_ext.Embedding(3, 2))
    with pytest.raises(TypeError, match=r"expected one dtype for every layer, got \['float32', 'float64'\]"):
        lstm_ext.Sequential(lstm_ext.Linear(2, 2), lstm_ext.Linear(2, 2, dtype=np.float64))
    with pytest.raises(TypeError, match=r"layers\[0\]: expected one of"):
        lstm_ext.Sequential(object())
    with pytest.raises(RuntimeError, match="call compile"):
        small_model().fit(*regression_data())
    with pytest.raises(ValueError, match="loss: expected one of"):
        small_model().compile(loss="hinge")


def test_gradients_of_the_whole_model_with_lengths(rng):
    model = small_model(dtype=np.float64)
    model.compile("mse", lstm_ext.SGD(lr=0.1))
    X, y = rng.standard_normal((3, 5, 2)), rng.standard_normal((3, 1))
    lengths = np.array([5, 2, 4])
    weights = model.state_dict()

    def loss(params):
        probe = small_model(dtype=np.float64)
        probe.load_state_dict(params)
        probe.compile("mse", lstm_ext.SGD(lr=0.1))
        return loss_and_gradient(probe, probe.forward(X, lengths=lengths), y, lengths)[0]

    value, d_out = loss_and_gradient(model, model.forward(X, lengths=lengths), y, lengths)
    model.backward(d_out)
    for name in ("0.weight_hh_l0", "0.bias_ih_l0", "3.weight"):
        numeric = np.zeros_like(weights[name])
        for index in np.ndindex(numeric.shape):
            up = {k: v.copy() for k, v in weights.items()}
            down = {k: v.copy() for k, v in weights.items()}
            up[name][index] += 1e-6
            down[name][index] -= 1e-6
            numeric[index] = (loss(up) - loss(down)) / 2e-6
        assert relative_error(model.grads[name], numeric) < 1e-7, name


def test_fit_lowers_the_loss_and_predicts(tmp_path):
    X, y = regression_data()
    model = small_model().compile("mse", lstm_ext.Adam(lr=0.01))
    before = model.evaluate(X, y)
    history = model.fit(X, y, epochs=40, batch_size=16, validation_data=(X[:16], y[:16]), verbose=0)
    assert len(history) == 40 and set(history[0]) == {"epoch", "loss", "val_loss"}
    assert history[-1]["loss"] < 0.2 * before
    assert model.evaluate(X, y) < 0.2 * before
    assert model.predict(X).shape == (64, 1)


def test_sequence_to_sequence_losses_skip_padded_steps(rng):
    model = lstm_ext.Sequential(lstm_ext.LSTM(2, 4, batch_first=True, seed=0), lstm_ext.Linear(4, 3, seed=0))
    model.compile("cross_entropy")
    X = rng.standard_normal((2, 6, 2)).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 6))
    lengths = np.array([6, 3])
    loss = model.evaluate(X, labels, lengths=lengths)
    changed = labels.copy()
    changed[1, 3:] = (changed[1, 3:] + 1) % 3  # only padded steps differ
    assert model.evaluate(X, changed, lengths=lengths) == loss


def test_training_is_reproducible_from_the_seed():
    X, y = regression_data()

    def train(seed):
        model = small_model(dropout=0.3, layers=2).compile("mse", lstm_ext.Adam(lr=0.01))
        model.fit(X, y, epochs=3, batch_size=16, seed=seed, verbose=0)
        return model.state_dict()

    first, again, other = train(1), train(1), train(2)
    for name, value in first.items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)
    assert any(not np.array_equal(other[name], value) for name, value in first.items())


def test_early_stopping_restores_the_best_weights():
    X, y = regression_data(n=32)
    Xv, yv = regression_data(n=32, seed=1)
    model = small_model().compile("mse", lstm_ext.Adam(lr=0.05))
    history = model.fit(X, y, epochs=200, batch_size=8, validation_data=(Xv, yv), early_stopping=3, verbose=0)
    assert len(history) < 200
    best = min(h["val_loss"] for h in history)
    assert history[-4]["val_loss"] == best  # three epochs without improvement after the best
    assert model.evaluate(Xv, yv) == pytest.approx(best, rel=1e-6)


def test_truncated_bptt_carries_the_state_across_chunks(rng):
    text = rng.integers(0, 5, size=(4, 24))
    model = lstm_ext.Sequential(lstm_ext.Embedding(5, 3, seed=0), lstm_ext.LSTM(3, 6, batch_first=True, seed=0),
                                lstm_ext.Linear(6, 5, seed=0)).eval()
    whole = model.forward(text)
    states, parts = None, []
    for start in range(0, 24, 8):
        parts.append(model.forward(text[:, start:start + 8], states=states))
        states = model.states
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=1e-6, atol=1e-6)

    def train(tbptt):
        m = lstm_ext.Sequential(lstm_ext.Embedding(5, 3, seed=0), lstm_ext.LSTM(3, 6, batch_first=True, seed=0),
                                lstm_ext.Linear(6, 5, seed=0)).compile("cross_entropy", lstm_ext.SGD(lr=0.5))
        history = m.fit(text[:, :-1], text[:, 1:], epochs=5, batch_size=4, shuffle=False, tbptt=tbptt, verbose=0)
        return m, history

    one_chunk, _ = train(23)
    plain, _ = train(None)
    for name, value in plain.state_dict().items():  # one chunk of the whole length = no truncation
        np.testing.assert_array_equal(one_chunk.state_dict()[name], value, err_msg=name)
    chunked, history = train(6)
    assert history[-1]["loss"] < history[0]["loss"]
    with pytest.raises(ValueError, match="tbptt: needs sequence-to-sequence targets"):
        chunked.fit(text, text[:, 0], tbptt=4, verbose=0)


def test_progress_output(capsys):
    X, y = regression_data(n=16)
    model = small_model().compile("mse")
    model.fit(X, y, epochs=2, batch_size=8, verbose=1)  # stderr is not a terminal here: no bar
    assert capsys.readouterr().err == ""
    model.fit(X, y, epochs=2, batch_size=8, verbose=2, validation_data=(X, y))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1: loss ") and "val_loss" in lines[0]


def test_fit_argument_errors():
    X, y = regression_data(n=8)
    model = small_model().compile("mse")
    with pytest.raises(ValueError, match=r"y: expected 8 samples \(as X\), got 7"):
        model.fit(X, y[:7])
    with pytest.raises(ValueError, match="epochs: expected an integer >= 1, got 0"):
        model.fit(X, y, epochs=0)
    with pytest.raises(ValueError, match="checkpoint_every: needs checkpoint="):
        model.fit(X, y, checkpoint_every=3)
    with pytest.raises(TypeError, match="validation_data: expected"):
        model.fit(X, y, validation_data=X)


def test_targets_of_the_wrong_shape_are_reported_with_the_whole_arrays_shape():
    # A classifier given labels (N, 1) was told about the first batch's (16, 1).
    model = lstm_ext.Sequential(lstm_ext.LSTM(2, 4, batch_first=True, seed=0), lstm_ext.LastStep(),
                                lstm_ext.Linear(4, 3, seed=0))
    model.compile("cross_entropy")
    X = np.zeros((50, 5, 2), np.float32)
    with pytest.raises(ValueError, match=r"y: expected shape \(50,\) \(class labels: the model's output \(50, 3\) "
                                         r"without its class axis\), got \(50, 1\)"):
        model.fit(X, np.zeros((50, 1), int), batch_size=16, verbose=0)
    with pytest.raises(ValueError, match=r"y_val: expected shape \(10,\)"):
        model.fit(X, np.zeros(50, int), validation_data=(X[:10], np.zeros((10, 1), int)), verbose=0)
    with pytest.raises(ValueError, match=r"y: expected shape \(50,\)"):
        model.evaluate(X, np.zeros((50, 1), int))
    model.compile("mse")
    with pytest.raises(ValueError, match=r"y: expected shape \(50, 3\) \(the model's output shape\), got \(50, 2\)"):
        model.fit(X, np.zeros((50, 2), np.float32), verbose=0)
