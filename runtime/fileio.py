"""Atomic writes: an interrupted write never leaves a half-written file under its final name."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import DiskFullError, EdgesegError, UsageError


def _current_umask() -> int:
    # Read once at import (single-threaded then): os.umask has no read-only form.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; finished artifacts get the usual permissions (0666 minus umask).
FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None, sweep: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Use it for writers that insist on a file name (torch.save, onnx.save, cv2.VideoWriter).
    ``suffix`` defaults to the final suffix so format-sniffing writers still work. A block that
    deletes the temporary file publishes nothing (e.g. a candidate that failed its check).
    ``sweep`` first removes a killed writer's leftovers of ``path`` (a scan of its folder): writers
    of many new files into one folder, a file per frame, pass False.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else final.suffix
    if sweep:
        remove_stale_temporaries(final, suffix)
    # Hidden name in the same folder (same filesystem, so the rename is atomic); the writer's
    # pid in the name lets a later run tell a killed writer's leftover from a running one.
    fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(final)}{os.getpid()}-", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, FILE_MODE)
            os.replace(tmp_path, final)
    except Exception as e:
        # Writers report a full disk in their own ways (OSError ENOSPC, torch's "file write
        # failed", a short protobuf): say it plainly when the file system is (nearly) full.
        if not isinstance(e, EdgesegError) and (is_disk_full(e) or free_bytes(final.parent) < LOW_SPACE):
            raise disk_full(final) from e
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


LOW_SPACE = 1 << 20  # below this much free space a failed write is put down to a full disk
_FULL_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)


def free_bytes(folder: str | os.PathLike) -> int:
    """Bytes an unprivileged writer may still use on ``folder``'s file system (large if unknown)."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs (Windows) or the folder is gone
        return 1 << 62
    return st.f_bavail * st.f_frsize


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in _FULL_ERRNOS


def disk_full(path: str | os.PathLike) -> DiskFullError:
    """The one-line error for an output that did not fit; says what was kept."""
    path = Path(path)
    kept = f"; the earlier {path.name} was kept" if path.exists() else "; nothing was written"
    return DiskFullError(f"disk full: {path} could not be written ({free_bytes(path.parent) // 1024:,} KB free on "
                         f"its file system){kept}; free some space or write elsewhere")


STALE_AFTER_S = 600.0  # a temporary file this old whose writer is gone is a killed run's leftover
LEGACY_STALE_AFTER_S = 86_400.0  # ".m.abcd1234.onnx" (no writer pid in the name): left a day, then removed


def _temp_prefix(final: Path) -> str:
    return f".{final.stem}.tmp-"


# A temporary name of atomic_path in text (a log line): .<stem>.tmp-<pid>-<random><suffix>, or the
# earlier .<stem>.<8 random characters><suffix>; groups: the stem and the suffix of the final name.
TEMP_NAME = re.compile(r"\.([^/\\\s]+?)\.(?:tmp-\d+-[A-Za-z0-9_]+|[A-Za-z0-9_]{8})(\.[A-Za-z0-9]+)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def remove_stale_temporaries(final: str | os.PathLike, suffix: str | None = None,
                             stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete temporary files :func:`atomic_path` left beside ``final`` when its writer was killed
    (kill -9, power cut): only files of our own naming, older than ``STALE_AFTER_S``, whose
    writer's process is gone. A caller that owns ``final`` exclusively (a lock) may pass a shorter
    ``stale_after_s``: the dead-writer check still applies. Returns what was removed."""
    final = Path(final)
    suffix = final.suffix if suffix is None else suffix
    prefix = _temp_prefix(final)
    removed = []
    try:
        entries = list(os.scandir(final.parent))
    except OSError:
        return removed
    now = time.time()
    legacy = re.compile(rf"^\.{re.escape(final.stem)}\.[a-z0-9_]{{8}}{re.escape(suffix)}$")
    for entry in entries:
        name = entry.name
        if legacy.match(name):  # the earlier naming, without a pid: only when clearly abandoned
            pid_text, min_age = "0", LEGACY_STALE_AFTER_S
        elif name.startswith(prefix) and name.endswith(suffix):
            pid_text, min_age = name[len(prefix):].split("-", 1)[0], stale_after_s
        else:
            continue
        try:
            if (not pid_text.isdigit() or not entry.is_file(follow_symlinks=False)
                    or now - entry.stat(follow_symlinks=False).st_mtime < min_age
                    or (pid_text != "0" and _pid_alive(int(pid_text)))):
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


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
    if p.exists() and not p.is_dir() and not p.is_file():
        raise UsageError(f"{what} {p} is not a regular file (a device, pipe or socket); give a file name")
    nearest = p if p.is_dir() else p.parent
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir():
        raise UsageError(f"{what} {p}: {nearest} is a file, so nothing can be written under it")
    if not os.access(nearest, os.W_OK | os.X_OK) or not _can_create_in(nearest):
        raise UsageError(f"{what} {p}: folder {nearest} is not writable (read-only, no permission or not a "
                         "normal file system, e.g. /proc); choose another place")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can really be created there (os.access says yes to root on read-only
    mounts and on /proc): create and delete a hidden probe."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgeseg-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return True


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
