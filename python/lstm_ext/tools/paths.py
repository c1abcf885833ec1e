"""Where the commands write: checked before any work, so that a bad --out fails at once in one
line (exit code 2), not after minutes of training or timing."""

from __future__ import annotations

import os
import tempfile
from typing import Optional

__all__ = ["writable_folder_problem", "writable_file_problem"]


def _cannot_create_in(folder: str) -> Optional[str]:
    """Why no file can be created in `folder` (None when one can): tried, not guessed."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return error.strerror or str(error)
    return None


def writable_folder_problem(path: str) -> Optional[str]:
    """None when `path` is a folder (made here if missing) where files can be written; else why not."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{path} exists and is not a folder"
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        return f"cannot make the folder {path}: {error.strerror or error}"
    problem = _cannot_create_in(path)
    return None if problem is None else f"cannot write files in {path} ({problem})"


def writable_file_problem(path: str) -> Optional[str]:
    """None when a file can be written at `path` (its folder exists and takes files); else why not."""
    if os.path.isdir(path):
        return f"{path} is a folder, not a file"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"the folder {folder} does not exist"
    problem = _cannot_create_in(folder)
    return None if problem is None else f"cannot write files in {folder} ({problem})"

