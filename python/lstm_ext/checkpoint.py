"""The checkpoint file: one .npz holding named arrays and a JSON header.

The header (a UTF-8 JSON document stored as the uint8 array ``__header__``) says what the file
is and carries everything that is not an array; it ends with a SHA-256 digest of itself and of
every array (name, dtype, shape and bytes), checked on reading, so that a corrupted file is
refused with a clear error instead of loading wrong numbers. Files are read with
``allow_pickle=False`` (nothing in them can run code) and written atomically (_io): an
interrupted write leaves the previous file as it was.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np

from ._io import write_bytes_atomic

__all__ = ["CheckpointError", "write_checkpoint", "read_checkpoint"]

FORMAT = "lstm_ext checkpoint"
VERSION = 1
_HEADER = "__header__"


class CheckpointError(ValueError):
    """The file is not a complete, intact lstm_ext checkpoint."""


def _digest(header: dict, arrays: dict) -> str:
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_checkpoint(path, header: dict, arrays: dict) -> None:
    """Write `header` (JSON-able) and `arrays` ({name: array}) to `path`, atomically."""
    for name, value in arrays.items():
        if name == _HEADER or not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            raise TypeError(f"arrays[{name!r}]: expected a numeric NumPy array")
    full = {"format": FORMAT, "version": VERSION, **header}
    full["sha256"] = _digest(full, arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **{_HEADER: np.frombuffer(json.dumps(full).encode(), dtype=np.uint8)}, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def read_checkpoint(path) -> tuple[dict, dict]:
    """(header, arrays) of the checkpoint at `path`; CheckpointError if it is not a complete,
    intact checkpoint (FileNotFoundError if there is no file)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:  # (closed even when np.load fails)
            arrays = {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path}: not a readable lstm_ext checkpoint (truncated or corrupted: {error})") from error
    if _HEADER not in arrays:
        raise CheckpointError(f"{path}: not an lstm_ext checkpoint (no header)")
    try:
        header = json.loads(arrays.pop(_HEADER).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: the checkpoint's header is corrupted ({error})") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an lstm_ext checkpoint")
    if header.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {header.get('version')}, this lstm_ext reads "
                              f"version {VERSION}")
    stored = header.pop("sha256", None)
    if stored != _digest(header, arrays):
        raise CheckpointError(f"{path}: the checkpoint is corrupted (its SHA-256 digest does not match its contents)")
    return header, arrays
