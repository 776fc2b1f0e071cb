"""POST (0x80), fast A20 (0x92) and the debug console (0x402)."""

import pytest

from pykvmm.devices.a20 import FastA20
from pykvmm.devices.debugcon import DebugCon
from pykvmm.devices.post import PostPort


def test_post_codes_recorded_in_order_with_count():
    post = PostPort()
    for code in (0x01, 0x02, 0xFF):
        post.write(0, code)
    assert post.state() == {"codes": [0x01, 0x02, 0xFF], "count": 3, "last": 0xFF}


def test_post_code_history_is_bounded():
    post = PostPort(limit=4)
    for code in range(100):
        post.write(0, code)
    assert post.state()["codes"] == [96, 97, 98, 99]
    assert post.state()["count"] == 100


def test_post_read_returns_last_code():
    post = PostPort()
    post.write(0, 0x55)
    assert post.read(0) == 0x55


def test_post_limit_must_be_positive():
    with pytest.raises(ValueError, match="-3"):
        PostPort(limit=-3)


def test_a20_reads_enabled_at_reset():
    assert FastA20().read(0) & 0x02


def test_a20_writes_recorded_and_read_back():
    a20 = FastA20()
    a20.write(0, 0x00)
    assert a20.read(0) == 0x00
    assert not a20.a20_enabled
    a20.write(0, 0x02)
    assert a20.state()["writes"] == [0x00, 0x02]


def test_a20_fast_reset_bit_counted_and_reads_zero():
    a20 = FastA20()
    a20.write(0, 0x03)
    assert a20.reset_requested == 1
    assert a20.read(0) == 0x02


def test_debugcon_writes_go_to_sink():
    out = bytearray()
    con = DebugCon(out.extend)
    for b in b"No bootable device.":
        con.write(0, b)
    assert out == b"No bootable device."


def test_debugcon_read_returns_e9_signature():
    assert DebugCon(lambda data: None).read(0) == 0xE9
