"""``--io-log PATH``: every guest IO operation, one line each, in the order the guest did them.

A line is ``SPACE ADDRESS DIR SIZE VALUE``, for example ``pio 0x3f8 w 1 0x41`` or
``mmio 0xb0005 r 1 0x60``: the space (``pio`` or ``mmio``), the port or guest-physical address,
``r`` or ``w``, the access size in bytes and the value, both numbers in hex.  A string IO
instruction gives one line per element, as the bus sees it.  The buses call the logger for every
operation, trapped or emulated, so logs of the same guest under different coalescing policies
are comparable line by line.

Lines are buffered (a logged guest can do millions of operations) and written when the buffer
fills and on ``flush``/``close``, which the command line calls on every ending of a run.
"""

from __future__ import annotations

import os

from ..errors import UsageError

_BUFFER_LINES = 4096  # lines held before they reach the OS


def format_op(space: str, addr: int, is_write: bool, size: int, value: int) -> str:
    return f"{space} {addr:#x} {'w' if is_write else 'r'} {size} {value:#x}\n"


class IoLog:
    """A bus ``log`` hook (see bus.IoLogger) writing to a file descriptor."""

    __slots__ = ("fd", "_lines", "count")

    def __init__(self, path: str):
        try:
            self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                          0o644)
        except OSError as e:
            raise UsageError(f"--io-log {path}: cannot open it for writing: {e.strerror}") from None
        self._lines: list[str] = []
        self.count = 0  # operations logged

    def __call__(self, space: str, addr: int, is_write: bool, size: int, value: int) -> None:
        self.count += 1
        lines = self._lines
        lines.append(f"{space} {addr:#x} {'w' if is_write else 'r'} {size} {value:#x}\n")
        if len(lines) >= _BUFFER_LINES:
            self.flush()

    def flush(self) -> None:
        if self.fd is None or not self._lines:
            return
        data = "".join(self._lines).encode()
        self._lines.clear()
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None

    def attach(self, machine) -> None:
        """Log both of a machine's buses."""
        machine.pio.log = self
        machine.mmio.log = self
