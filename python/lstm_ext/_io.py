"""Files written so that they are never lost: whole or not at all.

A write goes to a temporary file in the destination's folder, is flushed and fsync'ed, then
renamed over the destination (atomic on POSIX and Windows), and the folder is fsync'ed so that
the rename itself survives a crash. An interrupted write leaves the previous file intact and at
worst a stray temporary file, which is removed when the write fails in Python.
"""

from __future__ import annotations

import os
import tempfile

__all__ = ["write_bytes_atomic", "write_text_atomic"]


def write_bytes_atomic(path, data: bytes) -> None:
    """Replace the file at `path` with `data`, atomically."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def write_text_atomic(path, text: str, encoding: str = "utf-8") -> None:
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
