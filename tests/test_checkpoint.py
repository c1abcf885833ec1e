"""Checkpoints: save and load, resume after SIGKILL bit for bit, corrupted and truncated files,
interrupted writes, no unpickling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import lstm_ext
from lstm_ext.checkpoint import read_checkpoint, write_checkpoint

TRAIN = textwrap.dedent("""
    import sys
    import numpy as np
    import lstm_ext

    checkpoint, epochs, out, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    rng = np.random.default_rng(0)
    if mode == "sequence to one":
        X = rng.standard_normal((256, 20, 3)).astype(np.float32)
        y = X[:, :5, :1].mean(axis=1)
        model = lstm_ext.Sequential(lstm_ext.LSTM(3, 32, num_layers=2, dropout=0.2, batch_first=True, seed=0),
                                    lstm_ext.LastStep(), lstm_ext.Linear(32, 1, seed=0))
        model.compile("mse", lstm_ext.Adam(lr=0.01), clip_grad_norm=1.0)
        fit = dict(batch_size=16, validation_data=(X[:32], y[:32]), early_stopping=100)
    else:  # truncated BPTT: checkpoints between chunks carry the state
        tokens = rng.integers(0, 7, size=(8, 401))
        X, y = tokens[:, :-1], tokens[:, 1:]
        model = lstm_ext.Sequential(lstm_ext.Embedding(7, 8, seed=0), lstm_ext.GRU(8, 24, batch_first=True, seed=0),
                                    lstm_ext.Linear(24, 7, seed=0))
        model.compile("cross_entropy", lstm_ext.SGD(lr=0.1, momentum=0.9))
        fit = dict(batch_size=4, tbptt=20)
    model.fit(X, y, epochs=epochs, checkpoint=checkpoint, checkpoint_every=3, resume=True, verbose=0, **fit)
    np.savez(out, **model.state_dict())
""")


def run_training(tmp_path, name, mode, epochs):
    return subprocess.Popen([sys.executable, "-c", TRAIN, str(tmp_path / f"{name}.ckpt"), str(epochs),
                             str(tmp_path / f"{name}.npz"), mode], stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("mode, epochs", [("sequence to one", 40), ("truncated BPTT", 12)])
def test_a_run_killed_and_resumed_ends_with_the_same_weights(tmp_path, mode, epochs):
    straight = run_training(tmp_path, "straight", mode, epochs)
    _, errors = straight.communicate(timeout=600)
    assert straight.returncode == 0, errors

    victim = run_training(tmp_path, "resumed", mode, epochs)
    checkpoint = tmp_path / "resumed.ckpt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and victim.poll() is None:
        time.sleep(0.01)
    time.sleep(0.15)  # somewhere in the middle of the run, not at a checkpoint in particular
    assert victim.poll() is None, "the run ended before it could be killed; make it longer"
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert not (tmp_path / "resumed.npz").exists()
    header, _ = read_checkpoint(checkpoint)
    killed_at = (header["fit"]["epoch"], header["fit"]["batch"], header["fit"]["chunk"])

    resumed = run_training(tmp_path, "resumed", mode, epochs)
    _, errors = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, errors
    assert killed_at != (epochs, 0, 0), "the kill came after the last checkpoint"
    with np.load(tmp_path / "straight.npz") as a, np.load(tmp_path / "resumed.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(b[name], a[name], err_msg=name)


def trained_model(tmp_path, epochs=3):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((32, 6, 2)).astype(np.float32)
    y = X[:, 0, :1]
    model = lstm_ext.Sequential(lstm_ext.LSTM(2, 5, batch_first=True, dropout=0.0, seed=0), lstm_ext.LastStep(),
                                lstm_ext.Linear(5, 1, seed=0))
    model.compile("mse", lstm_ext.AdamW(lr=0.01, weight_decay=0.01), clip_grad_norm=2.0)
    model.fit(X, y, epochs=epochs, batch_size=8, verbose=0)
    return model, X, y


def test_save_and_load_round_trip(tmp_path):
    model, X, y = trained_model(tmp_path)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = lstm_ext.load(path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert repr(loaded) == repr(model) and loaded.history == model.history
    assert loaded.optimizer.hyper() == model.optimizer.hyper() and loaded.clip_norm == 2.0
    # Training on from the loaded copy is training on from the original, bit for bit.
    model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    loaded.fit(X, y, epochs=2, batch_size=8, verbose=0)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value, err_msg=name)


def test_resume_in_process_continues_a_shorter_run(tmp_path):
    path = tmp_path / "run.ckpt"
    model, X, y = trained_model(tmp_path, epochs=1)
    straight, _, _ = trained_model(tmp_path, epochs=1)
    model.fit(X, y, epochs=2, batch_size=8, checkpoint=path, verbose=0)
    fresh, _, _ = trained_model(tmp_path, epochs=1)
    fresh.fit(X, y, epochs=4, batch_size=8, checkpoint=path, resume=True, verbose=0)  # epochs 3 and 4
    straight.fit(X, y, epochs=4, batch_size=8, verbose=0)
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[name], value, err_msg=name)
    with pytest.raises(ValueError, match=r"resume: the checkpoint .* other settings .*'batch_size': \(8, 4\)"):
        fresh.fit(X, y, epochs=5, batch_size=4, checkpoint=path, resume=True, verbose=0)


def test_corrupted_and_truncated_checkpoints_are_refused(tmp_path):
    model, _, _ = trained_model(tmp_path)
    path = tmp_path / "model.npz"
    model.save(path)
    data = path.read_bytes()

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(lstm_ext.CheckpointError, match="truncated or corrupted"):
        lstm_ext.load(truncated)

    header, arrays = read_checkpoint(path)
    name = next(k for k in arrays if k.startswith("param:"))
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] += 1.0  # a flipped value with the old digest
    tampered = tmp_path / "tampered.npz"
    stored = dict(np.load(path, allow_pickle=False))
    stored[name] = arrays[name]
    np.savez(tampered, **stored)
    with pytest.raises(lstm_ext.CheckpointError, match="digest does not match"):
        lstm_ext.load(tampered)

    not_ours = tmp_path / "other.npz"
    np.savez(not_ours, weights=np.zeros(3))
    with pytest.raises(lstm_ext.CheckpointError, match="not an lstm_ext checkpoint"):
        lstm_ext.load(not_ours)
    with pytest.raises(FileNotFoundError):
        lstm_ext.load(tmp_path / "missing.npz")


def test_pickled_objects_are_never_loaded(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __header__=np.array([{"format": "lstm_ext checkpoint"}], dtype=object))
    with pytest.raises(lstm_ext.CheckpointError, match="truncated or corrupted"):
        lstm_ext.load(path)  # allow_pickle=False: object arrays are refused, not unpickled


def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, X, y = trained_model(tmp_path)
    path = tmp_path / "model.npz"
    model.save(path)
    before = path.read_bytes()
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)

    def crash(_):
        raise OSError("power failure")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="power failure"):
        model.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    lstm_ext.load(path)


def test_write_checkpoint_refuses_non_numeric_arrays(tmp_path):
    with pytest.raises(TypeError, match=r"arrays\['x'\]: expected a numeric NumPy array"):
        write_checkpoint(tmp_path / "x.npz", {}, {"x": np.array(["a"])})
