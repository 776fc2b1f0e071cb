"""Output buffers are bounded (issue 8, section 2): a guest printing without end never makes the
serial/debug-console sink or the IO log hold more than their buffer limits in host memory, and
what was buffered reaches the file on flush."""

from __future__ import annotations

import os

from pykvmm.machine import iolog, sinks


def test_sink_buffer_stays_under_its_limit(tmp_path):
    path = tmp_path / "out"
    sink = sinks.open_sink(f"file:{path}")
    peak = 0
    for i in range(300_000):
        sink(bytes((0x30 + i % 10,)))
        peak = max(peak, len(sink.buf))
    assert peak <= sinks._BUFFER_LIMIT
    sink.close()
    data = path.read_bytes()
    assert len(data) == 300_000 == sink.count
    assert data[:10] == b"0123456789"


def test_sink_byte_method_buffers_like_a_bytes_write(tmp_path):
    path = tmp_path / "out"
    sink = sinks.open_sink(f"file:{path}")
    peak = 0
    for i in range(300_000):
        if i % 2:
            sink.byte(0x30 + i % 10)
        else:
            sink(bytes((0x30 + i % 10,)))
        peak = max(peak, len(sink.buf))
    assert peak <= sinks._BUFFER_LIMIT
    sink.close()
    data = path.read_bytes()
    assert len(data) == 300_000 == sink.count and data[:10] == b"0123456789"
    null = sinks.open_sink("null")
    null.byte(65)
    assert null.count == 1 and not null.buf


def test_io_log_buffer_stays_under_its_limit(tmp_path):
    path = tmp_path / "io.log"
    log = iolog.IoLog(str(path))
    peak = 0
    for i in range(20_000):
        log("pio", 0x3F8, True, 1, i & 0xFF)
        peak = max(peak, len(log._lines))
    assert peak <= iolog._BUFFER_LINES
    assert os.path.getsize(path) > 0  # full buffers already reached the file
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 20_000 and lines[1] == "pio 0x3f8 w 1 0x1"


def test_null_sink_buffers_nothing():
    sink = sinks.open_sink("null")
    for _ in range(100_000):
        sink(b"x")
    assert sink.count == 100_000 and not sink.buf
