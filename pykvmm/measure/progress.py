"""A plain-text progress bar on stderr, shown once a sweep has run for a couple of seconds."""

from __future__ import annotations

import sys
import time

SHOW_AFTER_S = 2.0
WIDTH = 30


class Progress:
    def __init__(self, total: int, stream=None, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.t0 = time.monotonic()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_pct = -10
        self._shown = False

    def step(self, label: str = "") -> None:
        self.done += 1
        elapsed = time.monotonic() - self.t0
        if not self.enabled or elapsed < SHOW_AFTER_S:
            return
        self.stream.write(self.line(label, elapsed) + ("\r" if self._tty else "\n")
                          if self._tty or self._new_decile() else "")
        self.stream.flush()
        self._shown = True

    def _new_decile(self) -> bool:
        pct = 100 * self.done // self.total
        if pct >= self._last_pct + 10 or self.done == self.total:
            self._last_pct = pct
            return True
        return False

    def line(self, label: str, elapsed: float) -> str:
        frac = self.done / self.total
        fill = int(WIDTH * frac)
        eta = elapsed / frac - elapsed if frac else 0.0
        return (f"[{'#' * fill}{'.' * (WIDTH - fill)}] {self.done}/{self.total} "
                f"{elapsed:4.0f}s, {eta:4.0f}s left  {label[:40]:40s}")

    def close(self) -> None:
        if self._shown and self._tty:
            self.stream.write("\n")
            self.stream.flush()
