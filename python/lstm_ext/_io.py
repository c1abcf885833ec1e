"""Files written so that they are never lost: whole or not at all.

A write goes to a temporary file in the destination's folder, is flushed and fsync'ed, then
renamed over the destination (atomic on POSIX and Windows), and the folder is fsync'ed so that
the rename itself survives a crash. An interrupted write leaves the previous file intact and at
worst a stray temporary file, which is removed when the write fails in Python. The file gets
the mode a plain open() would give it: an existing file's own mode, a new file 0666 less the
user's umask (the temporary file starts at 0600).
"""

from __future__ import annotations

import os
import stat
import tempfile
from typing import Union

__all__ = ["write_bytes_atomic", "write_text_atomic"]

PathLike = Union[str, "os.PathLike[str]"]


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Replace the file at `path` with `data`, atomically."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    mode = _mode_for(path)
    descriptor, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(data)
            f.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _mode_for(path: str) -> int:
    """The permission bits open(path, "w") would leave: the file's own if it exists, else 0666
    less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:  # Linux: read it without changing it
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def write_text_atomic(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    """Replace the file at `path` with `text`, atomically."""
    write_bytes_atomic(path, text.encode(encoding))


def _fsync_folder(folder: str) -> None:
    if not hasattr(os, "O_DIRECTORY"):
        return  # Windows: a folder cannot be opened for fsync
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
