"""Process-wide signal handling for the commands that run the frame loop (the library only sees
a stop event)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[list]:
    """SIGINT/SIGTERM set ``stop`` (the run ends at the next frame and outputs are finalised).

    A second signal raises KeyboardInterrupt for a user who does not want to wait, except while
    the run finishes its outputs (``stop.finishing`` of a :class:`~edgeseg.runtime.pipeline.StopEvent`):
    then it is held and raised once they are final. Yields a list that holds
    ``[signal name, number]`` once a signal arrived; the name also becomes ``stop.reason``.
    """
    caught: list = []
    if threading.current_thread() is not threading.main_thread():
        yield caught  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            if getattr(stop, "finishing", False):
                stop.hold()
                return
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        caught[:] = [name, signum]
        if hasattr(stop, "reason"):
            stop.set(name)
        else:
            stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
