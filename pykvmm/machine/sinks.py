"""Output sinks for serial ports and the debug console: stdout, a file, or nothing.

Output is buffered for speed (a polled UART writes one byte per guest OUT) and flushed when the
buffer fills, at each newline on a terminal, and on every ending of a run (the machine calls
``flush`` from its ``finally``), so nothing the guest wrote is lost.
"""

from __future__ import annotations

import os
import sys

from ..errors import UsageError

_BUFFER_LIMIT = 64 * 1024  # bytes held before a write reaches the OS


class Sink:
    __slots__ = ("fd", "buf", "count", "_owns", "_line_buffered", "name")

    def __init__(self, fd: int | None, owns: bool = False, line_buffered: bool = False, name: str = ""):
        self.fd = fd
        self.buf = bytearray()
        self.count = 0  # bytes the guest wrote
        self._owns = owns
        self._line_buffered = line_buffered
        self.name = name

    def __call__(self, data: bytes) -> None:
        self.count += len(data)
        if self.fd is None:
            return
        self.buf += data
        if len(self.buf) >= _BUFFER_LIMIT or (self._line_buffered and b"\n" in data):
            self.flush()

    def byte(self, value: int) -> None:
        """One byte (a UART's THR write): the same as ``self(bytes((value,)))``, without
        building a bytes object for it."""
        self.count += 1
        if self.fd is None:
            return
        buf = self.buf
        buf.append(value)
        if len(buf) >= _BUFFER_LIMIT or (value == 10 and self._line_buffered):
            self.flush()

    def flush(self) -> None:
        if self.fd is None or not self.buf:
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
