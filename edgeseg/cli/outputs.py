"""One check for every output option of every command, before any work is done.

An output (``--json``, ``--out``, ``--save``, ``--save-ids``, the files export and train derive
from them) must be writable and must never be one of the command's inputs (the model, the
source, the checkpoint, ``--resume``, ``--weights``, the dataset's files), nor another output:
the same file counts however it is reached (a symlink, a hard link, ``./x`` for ``x``).
"""

from __future__ import annotations

import argparse
import glob
import os
from collections.abc import Iterator
from pathlib import Path

# attribute -> how the user wrote it
INPUT_OPTIONS = {"model": "the model", "models": "a model", "checkpoint": "the checkpoint", "source": "--source",
                 "source_arg": "the source",
                 "resume": "--resume", "weights": "--weights", "data": "--data", "calib": "--calib",
                 "classes": "--classes", "val": "--val"}
OUTPUT_OPTIONS = {"json": "--json", "out": "--out", "save": "--save", "save_ids": "--save-ids"}
FOLDER_OUTPUTS = ("out", "save", "save_ids")  # may name a folder
# Inputs whose folders are read recursively (a dataset): any image below them is an input file.
RECURSIVE_INPUTS = ("data", "calib", "val")
MEDIA_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                  ".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".txt", ".csv")
GLOB_CAP = 100_000  # a glob source is expanded for the check up to this many files


def check_outputs(args: argparse.Namespace) -> None:
    """Raise UsageError (one line) for an unwritable output or one that would replace an input."""
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.fileio import check_writable

    outputs = list(_outputs(args))
    for what, path, folder_ok in outputs:
        if not (what == "--json" and path == "-"):  # info --json - writes to stdout
            check_writable(path, what, folder_ok=folder_ok)
    inputs = list(_inputs(args))
    for what, path, _ in outputs:
        if path == "-":
            continue
        for in_what, in_path, recursive in inputs:
            if in_what == "--resume" and what.endswith(")"):
                continue  # a resumed run rewrites its own last.pt by design
            if _same(path, in_path) or _inside_as_file(path, in_path, recursive):
                raise UsageError(f"{what} would overwrite the input {in_path} ({in_what}); "
                                 f"choose another {what.split()[0]} path")
    for i, (what, path, _) in enumerate(outputs):
        for other_what, other, _ in outputs[i + 1:]:
            if path != "-" and other != "-" and _same(path, other):
                raise UsageError(f"{what} and {other_what} are the same file ({path}); give each its own path")


def _outputs(args: argparse.Namespace) -> Iterator[tuple[str, str, bool]]:
    for attr, what in OUTPUT_OPTIONS.items():
        value = getattr(args, attr, None)
        if isinstance(value, (str, os.PathLike)) and str(value):
            yield what, os.fspath(value), attr in FOLDER_OUTPUTS
    yield from _derived_outputs(args)


def _derived_outputs(args: argparse.Namespace) -> Iterator[tuple[str, str, bool]]:
    """Files a command writes that no option names one by one (train's checkpoints)."""
    if getattr(args, "command", None) == "train":
        out = getattr(args, "out", None) or (str(Path(args.resume).parent) if getattr(args, "resume", None)
                                             else os.path.join("runs", "train"))
        for name in ("best.pt", "last.pt", "metrics.csv"):
            yield f"--out {out} ({name})", os.path.join(out, name), False


def _inputs(args: argparse.Namespace) -> Iterator[tuple[str, str, bool]]:
    for attr, what in INPUT_OPTIONS.items():
        values = getattr(args, attr, None)
        for value in values if isinstance(values, list) else [values]:
            if not isinstance(value, (str, os.PathLike)) or not str(value) or "://" in str(value):
                continue
            value = os.fspath(value)
            if not os.path.exists(value) and any(c in value for c in "*?["):
                for i, hit in enumerate(glob.iglob(value, recursive=True)):
                    if i >= GLOB_CAP:
                        break
                    yield what, hit, False
                continue
            yield what, value, attr in RECURSIVE_INPUTS


def _same(a: str, b: str) -> bool:
    """The same file or folder: by inode where both exist (hard links, symlinks), else by real path."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _inside_as_file(out: str, folder: str, recursive: bool) -> bool:
    """An existing media file in an input folder (the source's images, a dataset's images and
    labels) is an input too."""
    if not (os.path.isdir(folder) and os.path.isfile(out)) or Path(out).suffix.lower() not in MEDIA_SUFFIXES:
        return False
    real_out, real_folder = os.path.realpath(out), os.path.realpath(folder)
    if recursive:
        return real_out.startswith(real_folder.rstrip(os.sep) + os.sep)
    return os.path.dirname(real_out) == real_folder
