"""Checkpoints: save and load, resume after SIGKILL bit for bit, corrupted and truncated files,
interrupted writes, no unpickling."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import lstm_ext
from lstm_ext.testing import relative_error
from lstm_ext.checkpoint import read_checkpoint, write_checkpoint
from conftest import not_emulated

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
@not_emulated("timing-bound: qemu-user is too slow (three training runs in processes of their own, over 10 min)")
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
    with pytest.raises(lstm_ext.CheckpointError, match=r"'__header__.npy' holds dtype object, not numbers"):
        lstm_ext.load(path)  # object arrays are refused before reading, never unpickled


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


# -- hostile files: every one raises CheckpointError naming what is wrong, before reading much --------

def edited(tmp_path, source, change, name="edited.npz"):
    """A copy of the checkpoint `source` changed by change(header, arrays) and digested again (the
    digest has no key: anyone can recompute it)."""
    header, arrays = read_checkpoint(source)
    arrays = {k: v.copy() for k, v in arrays.items()}
    change(header, arrays)
    path = tmp_path / name
    write_checkpoint(path, header, arrays)
    return path


def npz_with_member(path, member_name, member_bytes, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr(member_name, member_bytes)
    return path


def npy_bytes(header: dict, data: bytes) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + data


def _set(path_in_header, value):
    def change(header, arrays):
        node = header
        for key in path_in_header[:-1]:
            node = node[key]
        node[path_in_header[-1]] = value
    return change


def _drop(prefix):
    def change(header, arrays):
        del arrays[next(k for k in sorted(arrays) if k.startswith(prefix))]
    return change


def _reshape_first_param(header, arrays):
    name = next(k for k in sorted(arrays) if k.startswith("param:"))
    arrays[name] = np.zeros(arrays[name].size + 1, arrays[name].dtype)


HOSTILE_EDITS = {
    "hidden_size changed": (_set(["model", 0, "config", "hidden_size"], 6), r"misshapen: \['0.weight_ih_l0"),
    "hidden_size 10**7": (_set(["model", 0, "config", "hidden_size"], 10**7), r"hidden_size = 10000000, more than"),
    "missing parameter": (_drop("param:0.bias_hh"), r"missing: \['0.bias_hh_l0'\]"),
    "extra parameter": (lambda h, a: a.update({"param:2.extra": np.zeros(2, np.float32)}), r"unexpected: \['2.extra'\]"),
    "misshapen parameter": (_reshape_first_param, r"misshapen: \['0.bias_hh_l0 \(21,\) instead of \(20,\)'\]"),
    "unknown layer": (_set(["model", 1, "type"], "Conv2d"), r"layer 1 is of an unknown type 'Conv2d'"),
    "model not a list": (_set(["model"], {"LSTM": 1}), r"does not describe a list of layers"),
    "bad layer setting": (_set(["model", 0, "config", "num_layers"], "two"), r"layer 0 \(LSTM\) has invalid settings"),
    "unknown loss": (_set(["compile", "loss"], "hinge"), r"unknown optimizer 'AdamW' or loss 'hinge'"),
    "unknown optimizer": (_set(["compile", "optimizer", "type"], "Lion"), r"unknown optimizer 'Lion'"),
    "bad hyper-parameter": (_set(["compile", "optimizer", "hyper"], {"lr": "fast"}),
                            r'compile.optimizer.hyper.lr: expected a number, got a string "fast"'),
    "hyper-parameter out of range": (_set(["compile", "optimizer", "hyper", "lr"], -1.0),
                                     r"ValueError: lr: expected a value in \(0.0, ∞\), got -1.0"),
    "malformed generator state": (_set(["rng", 0], {"bit_generator": "PCG64", "state": "x"}),
                                  r'rng\[0\].state: expected an object, got a string "x"'),
    "generator of another kind": (_set(["rng", 0, "bit_generator"], "MT19937"), r"ValueError"),
    "optimizer buffer misshapen": (lambda h, a: a.update({k: np.zeros(3, np.float32) for k in sorted(a)
                                                          if k.startswith("optimizer:")}), r"does not match a parameter"),
}


@pytest.mark.parametrize("case", HOSTILE_EDITS)
def test_an_edited_and_redigested_checkpoint_raises_checkpoint_error(tmp_path, case):
    model, X, _ = trained_model(tmp_path)
    model.save(tmp_path / "model.npz")
    change, message = HOSTILE_EDITS[case]
    with pytest.raises(lstm_ext.CheckpointError, match=message):
        lstm_ext.load(edited(tmp_path, tmp_path / "model.npz", change))


# Every field of the header is checked for its JSON kind (issue 27, item 9): a string boolean loaded
# as True through bool() ("no", "false"), a float step count as an int through int(), while the
# variant flags were strict. Each message names the field, the kind it must be and what it is.
SETTINGS = r"layer {} \({}\) has invalid settings: "
BOOLEAN = r"expected a boolean \(true or false\), got "
HEADER_KIND_EDITS = {
    # booleans (the three loaded as True)
    "bidirectional 'no'": (["model", 0, "config", "bidirectional"], "no", SETTINGS.format(0, "LSTM")
                           + "bidirectional: " + BOOLEAN + 'a string "no"'),
    "bias 'false'": (["model", 0, "config", "bias"], "false", SETTINGS.format(0, "LSTM") + "bias: " + BOOLEAN
                     + 'a string "false"'),
    "batch_first 'no'": (["model", 0, "config", "batch_first"], "no", SETTINGS.format(0, "LSTM") + "batch_first: "
                         + BOOLEAN + 'a string "no"'),
    "Linear bias 0": (["model", 2, "config", "bias"], 0, SETTINGS.format(2, "Linear") + "bias: " + BOOLEAN
                      + "an integer 0"),
    "peephole 1": (["model", 0, "config", "peephole"], 1, SETTINGS.format(0, "LSTM") + "peephole: " + BOOLEAN
                   + "an integer 1"),
    # integers: not floats, not booleans, not strings
    "hidden_size 5.0": (["model", 0, "config", "hidden_size"], 5.0, SETTINGS.format(0, "LSTM")
                        + "hidden_size: expected an integer, got a number 5.0"),
    "num_layers true": (["model", 0, "config", "num_layers"], True, SETTINGS.format(0, "LSTM")
                        + "num_layers: expected an integer, got a boolean true"),
    "proj_size '0'": (["model", 0, "config", "proj_size"], "0", SETTINGS.format(0, "LSTM")
                      + 'proj_size: expected an integer, got a string "0"'),
    "in_features 5.0": (["model", 2, "config", "in_features"], 5.0, SETTINGS.format(2, "Linear")
                        + "in_features: expected an integer, got a number 5.0"),
    "seed true": (["model", 0, "config", "seed"], True, SETTINGS.format(0, "LSTM")
                  + "seed: expected an integer or null, got a boolean true"),
    "steps '6'": (["compile", "optimizer", "steps"], "6", 'compile.optimizer.steps: expected an integer >= 0, got a '
                                                           'string "6"'),
    "steps 6.5": (["compile", "optimizer", "steps"], 6.5, "compile.optimizer.steps: expected an integer >= 0, got a "
                                                           "number 6.5"),
    "steps true": (["compile", "optimizer", "steps"], True, "compile.optimizer.steps: expected an integer >= 0, got a "
                                                             "boolean true"),
    "generator state 1.5": (["rng", 0, "state", "state"], 1.5, r"rng\[0\].state.state: expected an integer, got a "
                                                                r"number 1.5"),
    # numbers: not booleans, not strings
    "dropout '0'": (["model", 0, "config", "dropout"], "0", SETTINGS.format(0, "LSTM")
                    + 'dropout: expected a number, got a string "0"'),
    "recurrent_dropout false": (["model", 0, "config", "recurrent_dropout"], False, SETTINGS.format(0, "LSTM")
                                + "recurrent_dropout: expected a number, got a boolean false"),
    "lr true": (["compile", "optimizer", "hyper", "lr"], True, "compile.optimizer.hyper.lr: expected a number, got a "
                                                               "boolean true"),
    "clip_grad_norm '2'": (["compile", "clip_grad_norm"], "2", 'compile.clip_grad_norm: expected a number or null, '
                                                               'got a string "2"'),
    "history loss '0.5'": (["history", 0, "loss"], "0.5", r'history\[0\].loss: expected a number, got a string "0.5"'),
    # strings
    "dtype 64": (["model", 1, "config", "dtype"], 64, SETTINGS.format(1, "LastStep")
                 + "dtype: expected a string, got an integer 64"),
    "loss ['mse']": (["compile", "loss"], ["mse"], r'compile.loss: expected a string, got a list \["mse"\]'),
    # lists: where lists, of what they hold
    "zoneout 0.0": (["model", 0, "config", "zoneout"], 0.0, SETTINGS.format(0, "LSTM")
                    + "zoneout: expected a list of two numbers, got a number 0.0"),
    "zoneout ['0', 0]": (["model", 0, "config", "zoneout"], ["0", 0], SETTINGS.format(0, "LSTM")
                         + r'zoneout: expected a list of two numbers, got a list \["0", 0\]'),
    "betas of three": (["compile", "optimizer", "hyper", "betas"], [0.9, 0.99, 0.9],
                       r"compile.optimizer.hyper.betas: expected a list of two numbers, got a list \[0.9, 0.99, 0.9\]"),
    # objects
    "hyper a list": (["compile", "optimizer", "hyper"], [0.01], r"compile.optimizer.hyper: expected an object, got a "
                                                                r"list \[0.01\]"),
    "history record a number": (["history", 1], 0.5, r"history\[1\]: expected an object, got a number 0.5"),
}


@pytest.mark.parametrize("case", HEADER_KIND_EDITS)
def test_every_header_field_is_checked_for_its_json_kind(tmp_path, case):
    model, _, _ = trained_model(tmp_path)
    model.save(tmp_path / "model.npz")
    field, value, message = HEADER_KIND_EDITS[case]
    with pytest.raises(lstm_ext.CheckpointError, match=message):
        lstm_ext.load(edited(tmp_path, tmp_path / "model.npz", _set(field, value)))


def test_a_string_nesterov_is_refused(tmp_path):
    # SGD(nesterov="no") would be True through bool(); the loaded optimizer kept the string itself.
    model = lstm_ext.Sequential(lstm_ext.Linear(2, 1, seed=0))
    model.compile("mse", lstm_ext.SGD(lr=0.1, momentum=0.9, nesterov=True))
    model.save(tmp_path / "model.npz")
    assert lstm_ext.load(tmp_path / "model.npz").optimizer.hyper()["nesterov"] is True
    for value, shown in (("no", 'a string "no"'), (1, "an integer 1")):
        hostile = edited(tmp_path, tmp_path / "model.npz", _set(["compile", "optimizer", "hyper", "nesterov"], value))
        with pytest.raises(lstm_ext.CheckpointError, match=r"compile.optimizer.hyper.nesterov: expected a boolean "
                                                           rf"\(true or false\), got {shown}"):
            lstm_ext.load(hostile)


def test_every_constructor_argument_and_hyper_parameter_has_a_json_kind(tmp_path):
    # A layer or optimizer argument added without its kind in the checkpoint's tables would go
    # unchecked: every one of every type is there, and a model using them all goes through a file.
    import inspect
    from lstm_ext.checkpoint import LAYER_SETTINGS, OPTIMIZER_SETTINGS
    from lstm_ext.nn import LAYER_TYPES
    from lstm_ext.optim import OPTIMIZERS

    for name, layer_type in LAYER_TYPES.items():
        arguments = [p.name for p in inspect.signature(layer_type.__init__).parameters.values()
                     if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        assert set(arguments) <= set(LAYER_SETTINGS), (name, sorted(set(arguments) - set(LAYER_SETTINGS)))
    for name, optimizer_type in OPTIMIZERS.items():
        assert set(optimizer_type().hyper()) <= set(OPTIMIZER_SETTINGS), name
    model = lstm_ext.Sequential(
        lstm_ext.Embedding(5, 4, seed=0),
        lstm_ext.LSTM(4, 6, num_layers=2, batch_first=True, dropout=0.25, peephole=True, layer_norm=True,
                      zoneout=(0.1, 0.2), recurrent_dropout=0.3, seed=1),
        lstm_ext.GRU(6, 5, batch_first=True, layer_norm=True, bidirectional=True, seed=2),
        lstm_ext.RNN(10, 3, nonlinearity="relu", batch_first=True, bias=False, dtype=np.float32, seed=None),
        lstm_ext.LSTM(3, 4, proj_size=2, batch_first=True), lstm_ext.LastStep(), lstm_ext.Tanh(),
        lstm_ext.Linear(2, 3, bias=False, seed=4), lstm_ext.ReLU(), lstm_ext.Sigmoid())
    model.compile("mse", lstm_ext.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), clip_grad_norm=1.0)
    model.save(tmp_path / "every.npz")
    loaded = lstm_ext.load(tmp_path / "every.npz")
    assert repr(loaded) == repr(model)
    assert [layer.config() for layer in loaded.layers] == [layer.config() for layer in model.layers]


def test_hostile_files_are_refused_before_anything_large_is_read(tmp_path):
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros(3))
    with pytest.raises(lstm_ext.CheckpointError, match=r"not an lstm_ext checkpoint \(not a .npz archive\)"):
        lstm_ext.load(plain)  # was TypeError
    nested = npz_with_member(tmp_path / "nested.npz", "__header__.npy",
                             npy_bytes({"descr": "|u1", "fortran_order": False, "shape": (100_000,)}, b"[" * 100_000))
    with pytest.raises(lstm_ext.CheckpointError, match=r"header is corrupted \(RecursionError"):
        lstm_ext.load(nested)  # was RecursionError
    huge = npz_with_member(tmp_path / "huge.npz", "w.npy",
                           npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (10**12,)}, bytes(24)))
    with pytest.raises(lstm_ext.CheckpointError, match=r"'w.npy' claims shape \(1000000000000,\) \(8000000000000 bytes\) "
                                                       r"but holds 24 bytes"):
        lstm_ext.load(huge)  # was MemoryError (7.28 TiB)
    bomb = npz_with_member(tmp_path / "bomb.npz", "w.npy",
                           npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (2**24,)}, bytes(8 * 2**24)),
                           compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(lstm_ext.CheckpointError, match=r"'w.npy' is not an uncompressed .npy array"):
        lstm_ext.load(bomb)


FIT_EDITS = {
    "epoch not a number": (_set(["fit", "epoch"], "x"), r"fit.epoch: expected an integer >= 0"),
    "negative batch": (_set(["fit", "batch"], -3), r"fit.batch: expected an integer >= 0"),
    "carried states of another shape": (_set(["fit", "carried"], [0]), r"fit.carried\[0\]: a state of 0 parts"),
    "best weights missing": (_set(["fit", "has_best"], True), r"best weights .* do not match"),
    # Fields of the wrong JSON kind (issue 27, item 9): each passed for another kind of value.
    "has_best 0": (_set(["fit", "has_best"], 0), r"fit.has_best: expected a boolean \(true or false\), got an integer 0"),
    "stopped 'no'": (_set(["fit", "stopped"], "no"), r'fit.stopped: expected a boolean \(true or false\), got a string "no"'),
    "shuffle 1": (_set(["fit", "settings", "shuffle"], 1), r"fit.settings.shuffle: expected a boolean \(true or false\), "
                                                           r"got an integer 1"),
    "batch_size 8.0": (_set(["fit", "settings", "batch_size"], 8.0), r"fit.settings.batch_size: expected an integer >= 0, "
                                                                     r"got a number 8.0"),
    "steps 2.5": (_set(["fit", "steps"], 2.5), r"fit.steps: expected an integer >= 0, got a number 2.5"),
    "loss_sum '1'": (_set(["fit", "loss_sum"], "1"), r'fit.loss_sum: expected a number, got a string "1"'),
    "best true": (_set(["fit", "best"], True), r"fit.best: expected a number or null, got a boolean true"),
    "carried of strings": (_set(["fit", "carried"], ["2"]), r"fit.carried: expected a list of integers >= 0 or null"),
    "history record of strings": (_set(["fit", "history"], [{"epoch": 1, "loss": "0.5"}]),
                                  r'fit.history\[0\].loss: expected a number, got a string "0.5"'),
    "layer type a list": (_set(["model", 0, "type"], ["LSTM"]), r"written for another model"),  # was TypeError: unhashable
    "model a number": (_set(["model"], 5), r"written for another model"),  # was TypeError: not iterable
}


@pytest.mark.parametrize("case", FIT_EDITS)
def test_an_edited_training_checkpoint_is_refused_on_resume_and_leaves_the_model(tmp_path, case):
    model, X, y = trained_model(tmp_path, epochs=1)
    path = tmp_path / "run.ckpt"
    model.fit(X, y, epochs=2, batch_size=8, checkpoint=path, verbose=0)
    change, message = FIT_EDITS[case]
    hostile = edited(tmp_path, path, change, "hostile.ckpt")
    fresh, _, _ = trained_model(tmp_path, epochs=1)
    before = {name: value.copy() for name, value in fresh.state_dict().items()}
    with pytest.raises(lstm_ext.CheckpointError, match=message):
        fresh.fit(X, y, epochs=4, batch_size=8, checkpoint=hostile, resume=True, verbose=0)
    for name, value in fresh.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


DATA = os.path.join(os.path.dirname(__file__), "data")


def test_files_written_before_the_refactor_still_load(tmp_path):
    # Written by the code of commit cea93ad (tests/data/make_checkpoints_v1.py): a saved model, and
    # a training checkpoint taken in the middle of a truncated-BPTT fit with early stopping.
    with np.load(os.path.join(DATA, "expected_v1.npz")) as stored:
        expected = dict(stored)
    model = lstm_ext.load(os.path.join(DATA, "model_v1.npz"))
    rng = np.random.default_rng(7)
    X = rng.standard_normal((24, 9, 3))
    # To rounding (a float64 model): the file's predictions were computed by older kernels, with
    # Linear's product in NumPy's BLAS, whose kernel depends on the CPU (now the core computes it, the
    # same bits on every CPU with FMA).
    assert relative_error(model.predict(X[:5]), expected["model_prediction"]) < 1e-13
    assert model.optimizer is not None and len(model.history) == 2

    # Resumed from its checkpoint, the fit ends with the weights of the run that was never stopped.
    rng.integers(4, 10, size=24)  # the saved model's lengths: the generator moves on as it did
    tokens = rng.integers(0, 5, size=(6, 31))
    checkpoint = tmp_path / "fit.npz"
    shutil.copyfile(os.path.join(DATA, "fit_v1.npz"), checkpoint)
    resumed = lstm_ext.Sequential(lstm_ext.Embedding(5, 4, seed=0), lstm_ext.RNN(4, 7, batch_first=True, seed=1),
                                  lstm_ext.LSTM(7, 6, batch_first=True, dropout=0.0, seed=2),
                                  lstm_ext.Linear(6, 5, seed=3))
    resumed.compile("cross_entropy", lstm_ext.SGD(lr=0.1, momentum=0.9))
    resumed.fit(tokens[:, :-1], tokens[:, 1:], epochs=3, batch_size=3, tbptt=10, early_stopping=5,
                checkpoint=str(checkpoint), checkpoint_every=7, resume=True, verbose=0)
    # To rounding, not bit for bit: the run that wrote the file used older kernels, and a change in
    # the kernels' code may change which multiplies and adds the compiler fuses (the layer
    # normalization change moved the plain LSTM's gradients by an ulp here and there).
    for name, value in resumed.state_dict().items():
        assert relative_error(value, expected[f"fit_weight:{name}"]) < 1e-5, name
