"""Exceptions shared by all three stages.

Library code raises these; only the CLI turns them into a one-line message and
an exit code. Every message names the file or value at fault and says what was
expected or how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EdgesegError(Exception):
    """Base class: the message is a complete, user-facing sentence."""


class UsageError(EdgesegError, ValueError):
    """A bad argument value: unknown name, malformed size, out-of-range number."""


class DatasetError(EdgesegError):
    """A dataset folder, image or label that cannot be used."""


class CheckpointError(EdgesegError):
    """A file that is not a loadable edgeseg checkpoint."""


class ModelFormatError(EdgesegError):
    """An exported model that is missing, corrupt or lacks edgeseg metadata."""


class BackendUnavailableError(EdgesegError):
    """An inference backend or export target whose packages or hardware are missing."""


class EngineMismatchError(EdgesegError):
    """A TensorRT engine built for another GPU or TensorRT version."""


class ExportError(EdgesegError):
    """An export step failed (including a failed parity or accuracy gate)."""


class SourceError(EdgesegError):
    """A video source or sink that cannot be opened or stopped working."""


class DiskFullError(EdgesegError):
    """An output could not be written for lack of space; nothing under its final name was replaced."""


def close_matches(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` entries of ``choices`` that look like ``name`` (case-insensitive)."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> UsageError:
    """Build the standard 'unknown X' error with close-match suggestions."""
    choices = sorted(choices)
    hint = close_matches(name, choices)
    if hint:
        tail = f"did you mean {' or '.join(repr(h) for h in hint)}?"
    else:
        tail = f"choose one of: {', '.join(choices)}"
    return UsageError(f"unknown {kind} {name!r}; {tail}")


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), cut to ``limit`` characters:
    third-party errors (onnxruntime, OpenVINO, torch) can run to pages, and ours are one line."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]
