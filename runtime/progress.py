"""A dependency-free progress line for long work (training, export, predict)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """``with Progress(total, "train") as p: p.update(1, loss=0.3)``.

    Redraws in place on a terminal (at most 10 times a second); elsewhere (CI, logs)
    prints a plain line every ``log_every`` seconds so logs stay short.
    """

    def __init__(self, total: int | None, desc: str = "", stream: TextIO | None = None,
                 enabled: bool = True, log_every: float = 10.0, show_rate: bool = True) -> None:
        self.total, self.desc = total, desc
        self.show_rate = show_rate  # False where a field already gives the rate (one FPS figure, not two)
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every = log_every
        self.n = 0
        self.fields: dict[str, object] = {}
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1, **fields: object) -> None:
        self.n += n
        self.fields.update(fields)
        now = time.perf_counter()
        if now - self._last_draw >= (0.1 if self.tty else self.log_every):
            self._draw(now)

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        parts = [self.desc] if self.desc else []
        if self.total:
            pct = 100.0 * self.n / self.total
            width = 20
            done = int(width * min(1.0, self.n / self.total))
            parts.append(f"{pct:5.1f}% |{'#' * done}{'.' * (width - done)}| {self.n}/{self.total}")
            eta = (self.total - self.n) / rate if rate > 0 else 0.0
            parts.append(f"[{_fmt_time(elapsed)}<{_fmt_time(eta)}, {rate:.2f} it/s]")
        else:
            parts.append(f"{self.n} [{_fmt_time(elapsed)}, {rate:.2f} it/s]" if self.show_rate
                         else f"{self.n} [{_fmt_time(elapsed)}]")
        for k, v in self.fields.items():
            parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
        return " ".join(parts)

    def _draw(self, now: float) -> None:
        if not self.enabled:
            return
        self._last_draw = now
        if self.tty:
            self.stream.write("\r\033[K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K" + self.line() + "\n")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
        self.enabled = False
