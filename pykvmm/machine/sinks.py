"""Output sinks for serial ports and the debug console: stdout, a file, or nothing.

Output is buffered for speed (a polled UART writes one byte per guest OUT) and flushed when the
buffer fills, at each newline on a terminal, and on every ending of a run (the machine calls
``flush`` from its ``finally``), so nothing the guest wrote is lost.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from ..errors import UsageError

_BUFFER_LIMIT = 64 * 1024  # bytes held before a write reaches the OS


class Sink:
    __slots__ = ("fd", "buf", "_moved", "_owns", "_line_buffered", "name")

    def __init__(self, fd: int | None, owns: bool = False, line_buffered: bool = False, name: str = ""):
        self.fd = fd
        self.buf = bytearray()
        self._moved = 0  # bytes that left ``buf`` (written, or dropped by a null sink)
        self._owns = owns
        self._line_buffered = line_buffered
        self.name = name

    @property
    def count(self) -> int:
        """Bytes the guest wrote (kept as moved + buffered, so a raw append counts itself)."""
        return self._moved + len(self.buf)

    def __call__(self, data: bytes) -> None:
        if self.fd is None:
            self._moved += len(data)
            return
        self.buf += data
        if len(self.buf) >= _BUFFER_LIMIT or (self._line_buffered and b"\n" in data):
            self.flush()

    def byte(self, value: int) -> None:
        """One byte (a UART's THR write): the same as ``self(bytes((value,)))``, without
        building a bytes object for it."""
        if self.fd is None:
            self._moved += 1
            return
        buf = self.buf
        buf.append(value)
        if len(buf) >= _BUFFER_LIMIT or (value == 10 and self._line_buffered):
            self.flush()

    def raw_buffer(self) -> tuple[bytearray, Callable[[], None], int] | None:
        """(buf, flush, limit) for a device's hot path that appends bytes to ``buf`` itself and
        calls ``flush()`` once ``len(buf) >= limit``: the same effect as ``byte``, without a
        call per byte.  None when bytes need more than that (a line-buffered terminal flushes
        at each newline)."""
        if self._line_buffered or type(self) is not Sink:
            return None
        return self.buf, self.flush, _BUFFER_LIMIT

    def flush(self) -> None:
        if not self.buf:
            return
        self._moved += len(self.buf)
        if self.fd is None:  # a null sink (raw appends reach its buffer too)
            self.buf.clear()
            return
        view = memoryview(self.buf)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except BrokenPipeError:
            self.fd = None  # the reader went away; keep counting, stop writing
        finally:
            view.release()
            self.buf.clear()

    def close(self) -> None:
        self.flush()
        if self._owns and self.fd is not None:
            os.close(self.fd)
        self.fd = None


def open_sink(spec: str, option: str = "--serial") -> Sink:
    """stdio | null | file:PATH."""
    if spec == "stdio":
        fd = sys.stdout.fileno()
        return Sink(fd, owns=False, line_buffered=os.isatty(fd), name="stdio")
    if spec == "null":
        return Sink(None, name="null")
    if spec.startswith("file:") and len(spec) > 5:
        path = spec[5:]
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise UsageError(f"{option} {spec}: cannot open {path} for writing: {e.strerror}") from None
        return Sink(fd, owns=True, name=spec)
    raise UsageError(f"{option} must be stdio, null or file:PATH, not {spec!r}")
