"""Files the library writes get the permissions a plain open() would give them: the user's umask
for a new file, the existing file's own mode when it is replaced (the temporary file they are
renamed from starts at 0600)."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest

import lstm_ext
from lstm_ext._io import write_text_atomic

pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX permissions")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "summary.json", "{}\n")
        model = lstm_ext.Sequential(lstm_ext.Linear(2, 1, seed=0))
        model.save(tmp_path / "model.npz")
        with open(tmp_path / "plain.txt", "w") as f:  # what open() gives, for comparison
            f.write("x")
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    assert mode(tmp_path / "plain.txt") == expected
    assert mode(tmp_path / "summary.json") == expected and mode(tmp_path / "model.npz") == expected


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "model.npz"
    model = lstm_ext.Sequential(lstm_ext.Linear(2, 1, seed=0))
    model.save(path)
    os.chmod(path, 0o640)
    model.save(path)
    assert mode(path) == 0o640
    assert np.array_equal(lstm_ext.load(path).state_dict()["0.weight"], model.state_dict()["0.weight"])
