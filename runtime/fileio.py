"""Atomic writes: an interrupted write never leaves a half-written file under its final name."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import UsageError


def _current_umask() -> int:
    # Read once at import (single-threaded then): os.umask has no read-only form.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; finished artifacts get the usual permissions (0666 minus umask).
FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Use it for writers that insist on a file name (torch.save, onnx.save, cv2.VideoWriter).
    ``suffix`` defaults to the final suffix so format-sniffing writers still work. A block that
    deletes the temporary file publishes nothing (e.g. a candidate that failed its check).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Hidden name in the same folder (same filesystem, so the rename is atomic).
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=suffix if suffix is not None else final.suffix,
                               dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, FILE_MODE)
            os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kw: Any) -> Iterator[IO]:
    """``open()`` for writing that lands atomically (``mode`` is ``"w"`` or ``"wb"``)."""
    with atomic_path(path) as tmp, open(tmp, mode, **kw) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def check_writable(path: str | os.PathLike, what: str, folder_ok: bool = False) -> None:
    """Raise UsageError now, before any work is done, if ``path`` cannot be written later.

    ``what`` names the option (``"--json"``). ``folder_ok``: ``path`` may be an existing folder
    (an output folder or base name) rather than a file. Folders that do not exist yet are fine
    when their nearest existing parent is a writable folder (they are created when written).
    """
    p = Path(path)
    if p.is_dir() and not folder_ok:
        raise UsageError(f"{what} {p} is a folder; give a file name, e.g. {p / 'report.json'}")
    nearest = p if p.is_dir() else p.parent
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir():
        raise UsageError(f"{what} {p}: {nearest} is a file, so nothing can be written under it")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {p}: folder {nearest} is not writable (read-only or no permission); "
                         "choose another place")


def write_json(path: str | os.PathLike, data: Any) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")
    return Path(path)


def _json_default(o: Any) -> Any:
    # numpy scalars and arrays, Paths and tuples-as-keys show up in reports.
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"cannot write {type(o).__name__} as JSON")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
