"""Host input for the UART when --serial stdio: a reader thread, a bounded queue, paced delivery.

The reader thread only reads; every device call happens on the vCPU thread (devices are not
thread-safe).  It reads at most ``CHUNK`` bytes at a time and blocks while ``MAX_CHUNKS`` chunks
wait, so a fast producer cannot grow host memory without bound.  The machine moves bytes into the
UART only as its receive FIFO has room (``rx_room``), so a pasted line is not lost to overruns
while the guest is busy.  On a terminal stdin is put in raw mode for the run (ISIG kept, so
Ctrl-C still stops pykvmm) and restored at every ending.
"""

from __future__ import annotations

import os
import queue
import threading

CHUNK = 4096
MAX_CHUNKS = 16


class InputPump:
    def __init__(self, fd: int, on_data) -> None:
        self.fd = fd
        self._on_data = on_data  # called from the reader thread: must only kick the vCPU
        self.queue: queue.Queue[bytes] = queue.Queue(maxsize=MAX_CHUNKS)
        self.pending = bytearray()
        self.eof = False
        self._saved_tty = None
        self._thread = threading.Thread(target=self._reader, name="pykvmm-stdin", daemon=True)

    def start(self) -> None:
        if os.isatty(self.fd):
            import termios
            import tty

            self._saved_tty = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)
            attrs = termios.tcgetattr(self.fd)
            attrs[3] |= termios.ISIG  # keep Ctrl-C / Ctrl-\ as signals to pykvmm
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        self._thread.start()

    def stop(self) -> None:
        if self._saved_tty is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved_tty)
            self._saved_tty = None

    def _reader(self) -> None:
        import signal

        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            try:
                data = os.read(self.fd, CHUNK)
            except OSError:
                data = b""
            if not data:
                self.eof = True
                self._on_data()
                return
            self.queue.put(data)  # blocks while MAX_CHUNKS wait: bounded memory
            self._on_data()

    def feed(self, uart) -> None:
        """Move as many bytes as the UART has room for (vCPU thread only)."""
        room = uart.rx_room()
        while len(self.pending) < room:
            try:
                self.pending += self.queue.get_nowait()
            except queue.Empty:
                break
        if room and self.pending:
            n = uart.receive(bytes(self.pending[:room]))
            del self.pending[:n]
