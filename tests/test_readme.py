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
