"""KVM's exit data is read through bounds checks (issue 8, section 2): a data window outside the
mapped page, an odd IO size, an MMIO length over 8 bytes, an oversized internal-error payload
become values (Unsupported, clipped data), never an out-of-range read of host memory."""

from __future__ import annotations

import struct

from pykvmm.kvm import exits as X
from pykvmm.kvm import ioctls as K
from pykvmm.kvm.structs import RUN_EXIT_REASON, RUN_U
from pykvmm.kvm.vcpu import Vcpu

PAGE = 4096


def _vcpu(reason: int, payload: bytes) -> Vcpu:
    v = Vcpu.__new__(Vcpu)  # no fd: only the page and its size matter to decode_exit
    v.page = bytearray(2 * PAGE)
    v.page_size = 2 * PAGE
    struct.pack_into("<I", v.page, RUN_EXIT_REASON, reason)
    v.page[RUN_U:RUN_U + len(payload)] = payload
    return v


def _io(direction: int, size: int, port: int, count: int, off: int) -> bytes:
    return struct.pack("<BBHIQ", direction, size, port, count, off)


def test_io_data_window_past_the_mapping_is_unsupported():
    ex = _vcpu(K.KVM_EXIT_IO, _io(1, 1, 0x3F8, 2, 2 * PAGE - 1)).decode_exit()
    assert isinstance(ex, X.Unsupported) and "bad data window" in ex.name


def test_io_count_of_a_whole_page_fits_and_one_more_does_not():
    ok = _vcpu(K.KVM_EXIT_IO, _io(1, 4, 0x3F8, PAGE // 4, PAGE)).decode_exit()
    assert isinstance(ok, X.IoOut) and len(ok.data) == PAGE
    bad = _vcpu(K.KVM_EXIT_IO, _io(1, 4, 0x3F8, PAGE // 4 + 1, PAGE)).decode_exit()
    assert isinstance(bad, X.Unsupported)


def test_io_size_other_than_1_2_4_is_unsupported():
    for size in (0, 3, 8):
        ex = _vcpu(K.KVM_EXIT_IO, _io(0, size, 0x3F8, 1, PAGE)).decode_exit()
        assert isinstance(ex, X.Unsupported), size


def test_mmio_length_over_8_is_unsupported():
    payload = struct.pack("<Q8sIB", 0xB0000, b"\0" * 8, 9, 1)
    ex = _vcpu(K.KVM_EXIT_MMIO, payload).decode_exit()
    assert isinstance(ex, X.Unsupported) and "length 9" in ex.name


def test_internal_error_payload_is_clipped():
    payload = struct.pack("<II", K.KVM_INTERNAL_ERROR_EMULATION, 1000) + b"\xAA" * 200
    ex = _vcpu(K.KVM_EXIT_INTERNAL_ERROR, payload).decode_exit()
    assert isinstance(ex, X.InternalError)
    assert len(ex.data) <= 16 and len(ex.insn_bytes) <= 15
