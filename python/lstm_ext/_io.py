"""Files written so that they are never lost: whole or not at all.

A write goes to a temporary file in the destination's folder, is flushed and fsync'ed, then
renamed over the destination (atomic on POSIX and Windows), and the folder is fsync'ed so that
the rename itself survives a crash. An interrupted write leaves the previous file intact and at
worst a stray temporary file, which is removed when the write fails in Python. The file gets
the mode a plain open() would give it: an existing file's own mode, a new file 0666 less the
user's umask (the temporary file starts at 0600).

A symbolic link is written through, as open() does: the destination is the file the link
resolves to (the temporary file goes beside it, in its folder), and the link stays a link. A
dangling link creates its target, as open() would. A destination that exists but is not a
regular file (a folder, a device such as /dev/null, a FIFO, a socket) is refused with a
ValueError before anything is written: renaming over it would replace it with a regular file.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from typing import Union

__all__ = ["write_bytes_atomic", "write_text_atomic"]

PathLike = Union[str, "os.PathLike[str]"]


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Replace the file at `path` (or the file a symbolic link there resolves to) with `data`,
    atomically; ValueError if `path` exists and is not a regular file."""
    path = os.fspath(path)
    target = _destination(path)
    folder = os.path.dirname(target)
    mode = _mode_for(target)
    descriptor, temporary = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(data)
            f.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _destination(path: str) -> str:
    """The absolute path a write to `path` replaces: symbolic links resolved (a dangling link
    gives the path it points to). ValueError if that path exists and is not a regular file; an
    OSError (FileNotFoundError, NotADirectoryError, ...) if its folder cannot hold a file."""
    target = os.path.realpath(path)
    try:
        status = os.stat(target)
    except FileNotFoundError:  # a new file: its folder must exist, as for open(path, "w")
        folder = os.path.dirname(target)
        if not os.path.isdir(folder):
            raise FileNotFoundError(errno.ENOENT, f"cannot write {path!r}: no folder {folder!r}") from None
        return target
    if not stat.S_ISREG(status.st_mode):
        resolved = "" if target == os.path.abspath(path) else f" (it resolves to {target!r})"
        raise ValueError(f"path: expected a regular file or a new file's path, got {_file_kind(status.st_mode)}: "
                         f"{path!r}{resolved}")
    return target


def _file_kind(mode: int) -> str:
    """What kind of file `mode` (st_mode) describes, with its article."""
    kinds = [(stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "a file of another kind")


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
