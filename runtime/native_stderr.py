"""Keep libjpeg's own warnings off the terminal.

libjpeg (inside OpenCV) prints "Corrupt JPEG data: N extraneous bytes before marker 0xd9" with a
plain fprintf to stderr for every damaged part of a stream; no OpenCV setting silences it, and a
random MJPEG stream floods the terminal. The pipeline already counts such frames as corrupt. Around
a decode, file descriptor 2 is pointed at a pipe; afterwards the lines libjpeg wrote are dropped
(logged at debug level) and anything else another thread wrote meanwhile is passed on unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)
_lock = threading.Lock()  # one redirect at a time: fd 2 is process-wide
_LIBJPEG_PREFIXES = (b"Corrupt JPEG data", b"Premature end of JPEG file", b"Invalid SOS parameters",
                     b"Warning: ", b"Unsupported marker type")


@contextlib.contextmanager
def quiet_libjpeg() -> Iterator[None]:
    """Drop libjpeg's warning lines written to fd 2 inside the block (POSIX; elsewhere a no-op)."""
    if os.name != "posix" or os.environ.get("EDGESEG_VERBOSE") == "1":
        yield
        return
    with _lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            read_end, write_end = os.pipe()
        except (OSError, ValueError, AttributeError):
            yield
            return
        try:
            os.set_blocking(read_end, False)
            os.dup2(write_end, 2)
            os.close(write_end)
            try:
                yield
            finally:
                os.dup2(saved, 2)  # the pipe's last writer is gone: reading ends at what was written
                _forward(read_end)
        finally:
            os.close(read_end)
            os.close(saved)


def _forward(read_end: int) -> None:
    chunks = []
    while True:
        try:
            data = os.read(read_end, 65536)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
    kept = []
    for line in b"".join(chunks).splitlines(keepends=True):
        if line.startswith(_LIBJPEG_PREFIXES):
            log.debug("libjpeg: %s", line.decode("utf-8", "replace").rstrip())
        else:
            kept.append(line)
    if kept:
        os.write(2, b"".join(kept))
