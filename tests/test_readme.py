"""The README's examples run as written."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def example(heading: str) -> str:
    """The first python code block after `heading`."""
    text = README.read_text()
    return text[text.index(heading):].split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.skipif(not README.is_file(), reason="needs the source tree")
def test_the_sequence_classifier_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # it saves classifier.npz
    scope: dict = {}
    exec(compile(example("### A sequence classifier"), "README.md", "exec"), scope)
    assert scope["logits"].shape == (100, 2) and scope["accuracy"] == 1.0
    assert np.array_equal(scope["same"], scope["logits"])
    assert scope["loss"] == scope["history"][-1]["val_loss"]
    assert os.path.exists(tmp_path / "classifier.npz")


@pytest.mark.skipif(not README.is_file(), reason="needs the source tree")
def test_the_int8_example(tmp_path, monkeypatch):
    import lstm_ext

    monkeypatch.chdir(tmp_path)  # it saves model-int8.lstm
    layer = lstm_ext.LSTM(8, 32, num_layers=2, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 3, 8))
    scope: dict = {"lstm_ext": lstm_ext, "layer": layer, "x": x}
    exec(compile(example("## Inference in int8 and bfloat16"), "README.md", "exec"), scope)
    y_float, _ = layer(x)
    assert scope["y"].shape == y_float.shape and np.abs(scope["y"] - y_float).max() < 0.05
    assert np.array_equal(scope["fast"](x)[0], scope["y"])  # the loaded copy: the same bits
    assert repr(scope["fast"]).startswith("QuantizedLSTM(int8, LSTM(8, 32, num_layers=2")
