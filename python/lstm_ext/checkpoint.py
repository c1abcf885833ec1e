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
    intact checkpoint (FileNotFoundError if there is no file).

    Nothing is trusted before it is checked: the file must be a zip archive of uncompressed .npy
    members (what np.savez writes), each member's header must describe a numeric array of exactly
    the bytes the member holds (so that no header can make this allocate more than the file's own
    size), and the JSON header must parse; then the digest must match.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        arrays = _read_arrays(path)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path}: not a readable lstm_ext checkpoint (truncated or corrupted: {error})") from error
    if _HEADER not in arrays:
        raise CheckpointError(f"{path}: not an lstm_ext checkpoint (no header)")
    raw = arrays.pop(_HEADER)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path}: the checkpoint's header is corrupted (not a byte string)")
    try:
        header = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"{path}: the checkpoint's header is corrupted ({type(error).__name__}: {error})") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an lstm_ext checkpoint")
    if header.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {header.get('version')!r}, this lstm_ext reads "
                              f"version {VERSION}")
    stored = header.pop("sha256", None)
    try:
        intact = stored == _digest(header, arrays)
    except (TypeError, ValueError, RecursionError) as error:  # a header that cannot be serialised again
        raise CheckpointError(f"{path}: the checkpoint's header is corrupted ({type(error).__name__}: {error})") from error
    if not intact:
        raise CheckpointError(f"{path}: the checkpoint is corrupted (its SHA-256 digest does not match its contents)")
    return header, arrays


def _read_arrays(path: str) -> dict:
    """{name: array} of the .npy members of the .npz at `path`, each checked before it is read."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            zip_start = f.read(4) == b"PK\x03\x04"
        raise CheckpointError(f"{path}: " + ("not a readable lstm_ext checkpoint (truncated or corrupted: no zip "
                                             "directory at its end)" if zip_start else
                                             "not an lstm_ext checkpoint (not a .npz archive)"))
    file_bytes = os.path.getsize(path)
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename
            if not name.endswith(".npy") or info.compress_type != zipfile.ZIP_STORED or info.file_size > file_bytes:
                raise CheckpointError(f"{path}: member {name!r} is not an uncompressed .npy array within the file")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise CheckpointError(f"{path}: member {name!r} has .npy format version {version}")
                if dtype.hasobject or dtype.kind not in "biuf":
                    raise CheckpointError(f"{path}: member {name!r} holds dtype {dtype}, not numbers")
                count = 1
                for n in shape:
                    count *= n
                nbytes = count * dtype.itemsize  # Python integers: no overflow
                if nbytes != info.file_size - member.tell():
                    raise CheckpointError(f"{path}: member {name!r} claims shape {shape} ({nbytes} bytes) but holds "
                                          f"{info.file_size - member.tell()} bytes")
                data = member.read(nbytes)
            if len(data) != nbytes:
                raise CheckpointError(f"{path}: member {name!r} is truncated")
            arrays[name[:-len(".npy")]] = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran_order else "C")
    return arrays
