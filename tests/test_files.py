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


# -- symbolic links and what is not a regular file (issue 27, item 7) -----------------------------
# Every writer (model.save, fit's checkpoints, export_onnx, the tools' reports) goes through
# lstm_ext._io: a link is written through, the link kept; a path that is not a regular file is
# refused and left as it was.

def saved_weight(path) -> np.ndarray:
    return lstm_ext.load(path).state_dict()["0.weight"]


def test_a_symlink_is_written_through_and_kept(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    first = lstm_ext.Sequential(lstm_ext.Linear(2, 1, seed=0))
    first.save(runs / "5.npz")
    os.chmod(runs / "5.npz", 0o640)
    os.symlink(os.path.join("runs", "5.npz"), tmp_path / "latest.npz")  # relative, as `ln -s` makes them
    os.symlink("latest.npz", tmp_path / "newest.npz")  # a chain of two links
    second = lstm_ext.Sequential(lstm_ext.Linear(2, 1, seed=1))
    second.save(tmp_path / "newest.npz")
    assert os.readlink(tmp_path / "newest.npz") == "latest.npz"
    assert os.readlink(tmp_path / "latest.npz") == os.path.join("runs", "5.npz")
    np.testing.assert_array_equal(saved_weight(runs / "5.npz"), second.state_dict()["0.weight"])
    assert mode(runs / "5.npz") == 0o640  # the target's own mode, as open() would keep it
    # The temporary file was made beside the target and renamed there: nothing left in either folder.
    assert sorted(os.listdir(tmp_path)) == ["latest.npz", "newest.npz", "runs"]
    assert os.listdir(runs) == ["5.npz"]


def test_a_dangling_symlink_creates_its_target_and_stays_a_link(tmp_path):
    # As open(path, "w") does: the link's target is created, the link kept.
    (tmp_path / "runs").mkdir()
    os.symlink(tmp_path / "runs" / "6.npz", tmp_path / "latest.npz")
    write_text_atomic(tmp_path / "latest.npz", "text")
    assert os.path.islink(tmp_path / "latest.npz")
    assert (tmp_path / "runs" / "6.npz").read_text() == "text"
    # A dangling link into a folder that does not exist: refused, naming the path and the folder.
    os.symlink(tmp_path / "gone" / "7.npz", tmp_path / "broken.npz")
    with pytest.raises(FileNotFoundError, match=r"cannot write '.*broken.npz': no folder '.*gone'"):
        write_text_atomic(tmp_path / "broken.npz", "text")
    assert os.path.islink(tmp_path / "broken.npz") and not (tmp_path / "gone").exists()


def make_device(path) -> None:
    """A character device node like /dev/null at `path` (skips where mknod is not allowed)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, AttributeError, OSError) as error:
        pytest.skip(f"cannot make a device node here: {error}")


NOT_REGULAR = {
    "folder": (lambda path: os.mkdir(path), stat.S_ISDIR, "a folder"),
    "FIFO": (lambda path: os.mkfifo(path), stat.S_ISFIFO, r"a FIFO \(named pipe\)"),
    "device": (make_device, stat.S_ISCHR, "a character device"),
}


@pytest.mark.parametrize("through_a_link", [False, True], ids=["the path", "a link to it"])
@pytest.mark.parametrize("kind", NOT_REGULAR)
def test_a_path_that_is_not_a_regular_file_is_refused_and_left_as_it_was(tmp_path, kind, through_a_link):
    # A rename over a device node replaced it with a regular file (as root, export_onnx(layer,
    # "/dev/full") did); a folder gave IsADirectoryError naming the temporary file.
    make, is_kind, description = NOT_REGULAR[kind]
    target = tmp_path / "target"
    make(target)
    path = target
    if through_a_link:
        path = tmp_path / "link"
        os.symlink(target, path)
    model = lstm_ext.Sequential(lstm_ext.Linear(2, 1, seed=0))
    for write in (lambda: model.save(path), lambda: write_text_atomic(path, "text")):
        with pytest.raises(ValueError, match=rf"path: expected a regular file or a new file's path, got {description}: "
                                             rf"'{path}'"):
            write()
        assert is_kind(os.lstat(target).st_mode)
        assert os.path.islink(path) == through_a_link
        assert sorted(os.listdir(tmp_path)) == sorted(["target"] + (["link"] if through_a_link else []))
