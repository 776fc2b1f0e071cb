"""The KVM protocol cases of the coalescing engine, each run natively and coalesced."""

from __future__ import annotations

import time

import pytest

from pykvmm.coalesce import protocol as P
from pykvmm.coalesce.engine import CoalescingEngine
from pykvmm.kvm.system import Kvm
from pykvmm.machine.machine import Machine, MachineConfig

from .helpers import assemble

pytestmark = pytest.mark.kvm

END = """
    xor al, al
    out 0xf4, al
"""


def run(code: bytes, policy: str, extent: int = 10, timeout: float = 20, **setup):
    with Machine(MachineConfig(serial="null", serial_input=False)) as m:
        m.load_guest(code)
        if setup:
            m.set_entry_state(**setup)
        if policy != "off":
            m.engine = CoalescingEngine(m, policy, extent=extent)
        r = m.run(timeout=timeout)
        st = m.stats(r)
        mem = bytes(m.mem.ram[0x500:0x600])
    return r, st, mem


def check_same(src: str, policies=("fig5", "fig6", "fig7", "trace"), extent=10, min_emulated=1, **setup):
    code = assemble(src + END)
    ref_r, ref, ref_mem = run(code, "off", **setup)
    assert ref_r.end == "debug-exit", ref_r.detail
    for p in policies:
        r, st, mem = run(code, p, extent, **setup)
        assert (r.end, r.exit_status) == (ref_r.end, ref_r.exit_status), (p, r.detail)
        assert st["final_regs"] == ref["final_regs"], p
        assert st["io_ops"] == ref["io_ops"], p
        assert mem == ref_mem, p
        if p != "fig6":  # fig6 emulates only from the second sighting of a block
            assert st["coalesce"]["io_emulated"] >= min_emulated, (p, st["coalesce"])
    return ref


def test_probe_matches_one_of_the_two_known_hosts():
    proto = P.probe(Kvm())
    # Software backend (this host): OUT/MMIO write direct, reads complete first.
    # Hardware VMX/SVM: every kind completes first.
    assert proto["pio-in"] == P.COMPLETE_FIRST and proto["mmio-read"] == P.COMPLETE_FIRST
    assert proto["pio-out"] in (P.DIRECT, P.COMPLETE_FIRST)
    assert proto["mmio-write"] in (P.DIRECT, P.COMPLETE_FIRST)


def test_in_as_the_trapping_access():
    # The IN's value must reach AL before the block runs; then more IO follows.
    check_same("""
        mov dx, 0x3ff
        mov al, 0x77
        out dx, al          ; SCR = 0x77
        mov cx, 50
    again:
        in al, dx           ; traps: AL = 0x77
        add al, cl
        mov [0x500], al
        out 0xee, al
        in al, dx
        loop again
    """)


def test_block_whose_emulation_ends_back_at_the_trapping_instruction():
    # The loop branches back to the OUT that trapped: emulation stops there (outside the block's
    # range, which starts after it) and the next pass traps again.
    check_same("""
        mov cx, 100
        mov al, 0
    top:
        out 0xee, al
        inc al
        out 0xee, al
        loop top
    """)


def test_rep_outsb_and_rep_insb_with_iterations_left():
    check_same("""
        cld
        mov si, msg
        mov dx, 0x3f8
        mov cx, msg_len
        rep outsb            ; OUTS arrives one element per exit, RIP on the REP
        out 0xee, al
        mov dx, 0x3ff
        mov al, 0x42
        out dx, al
        mov di, 0x500
        mov cx, 40
        rep insb             ; INS may read ahead several elements in one exit
        out 0xee, al
        std
        mov si, msg + msg_len - 1
        mov dx, 0x3f8
        mov cx, msg_len
        rep outsb
        cld
        out 0xee, al
        jmp done
    msg: db "hello, rep outsb", 10
    msg_len equ $ - msg
    done:
    """)


def test_mmio_read_and_write_as_the_trapping_access():
    # The MMIO UART at 0xB0000: scratch register (offset 7) written and read back.
    check_same("""
        mov ax, 0xb000
        mov es, ax
        mov cx, 60
    again:
        mov [es:7], cl       ; MMIO write traps
        mov al, [es:7]       ; MMIO read inside the block
        add [0x500], al
        mov bl, [es:7]       ; MMIO read traps
        mov [es:7], bl
        loop again
    """)


def test_block_that_stops_at_its_first_instruction():
    # After the OUT comes HLT-free but unsupported code (a far jump): emulation refuses at once,
    # nothing is written back, and native execution continues exactly.
    check_same("""
        mov cx, 20
    again:
        out 0xee, al
        jmp 0:next
    next:
        out 0xee, al
        loop again
    """, min_emulated=0)


def test_kick_during_completion_runs_is_not_lost():
    # Every exit is an IN that needs a completion run; a timeout kick landing during one must
    # still end the run (regression: the completion run swallowed the kick's EINTR).
    code = assemble("""
        mov dx, 0x3ff
    again:
        in al, dx
        out 0xee, al
        in al, dx
        jmp again
    """)
    t = time.monotonic()
    r, st, _ = run(code, "fig5", timeout=0.5)
    assert r.end == "timeout"
    assert time.monotonic() - t < 5
    assert st["coalesce"]["completions"] > 0


def io_exits(src: str, policy: str, extent: int) -> tuple[int, dict]:
    # The NOPs keep the final debug-exit OUT out of the block's reach.
    r, st, _ = run(assemble(src + "times 60 nop\n" + END), policy, extent)
    assert r.end == "debug-exit", r.detail
    return st["exits"]["io"], st


PIT_PROGRAM = """
    mov al, 0x34        ; counter 0, lobyte/hibyte, mode 2
    out 0x43, al
    mov al, 0x9c
    out 0x40, al
    mov al, 0x2e
    out 0x40, al
"""

PIC_INIT = """
    mov al, 0x11
    out 0x20, al
    mov al, 0x11
    out 0xa0, al
    mov al, 0x08
    out 0x21, al
    mov al, 0x70
    out 0xa1, al
    mov al, 0x04
    out 0x21, al
    mov al, 0x02
    out 0xa1, al
    mov al, 0x01
    out 0x21, al
    mov al, 0x01
    out 0xa1, al
    mov al, 0xff
    out 0x21, al
    mov al, 0xff
    out 0xa1, al
"""


def test_pit_programming_sequence_is_one_exit_at_extent_10():
    off, _ = io_exits(PIT_PROGRAM, "off", 10)
    coalesced, st = io_exits(PIT_PROGRAM, "fig5", 10)
    assert off == 3 + 1  # three programming OUTs and the debug-exit OUT
    assert coalesced == 1 + 1
    assert st["io_ops"]["by_port"]["0x40"] == 2


def test_both_pics_initialisation_is_one_exit_at_extent_20():
    off, _ = io_exits(PIC_INIT, "off", 20)
    coalesced, st = io_exits(PIC_INIT, "fig5", 20)
    assert off == 10 + 1
    assert coalesced == 1 + 1
    assert st["io_ops"]["by_port"]["0xa1"] == 4


def test_figure_8_stream_is_one_exit_per_pass_once_known():
    # IO at instructions 3, 5, 8 and 11 of a 15-instruction loop body (the patent's Figure 8).
    src = """
        mov cx, 200
    body:
        inc bx              ; 1
        add si, bx          ; 2
        out 0xee, al        ; 3  the trapping IO
        xor di, si          ; 4
        out 0xee, al        ; 5
        inc bp              ; 6
        add ax, bp          ; 7
        out 0xee, al        ; 8
        sub di, ax          ; 9
        rol bx, 1           ; 10
        out 0xee, al        ; 11
        nop                 ; 12
        nop                 ; 13
        dec dx              ; 14
        loop body           ; 15
    """
    off, _ = io_exits(src, "fig5", 1)
    coalesced, st = io_exits(src, "fig5", 10)
    assert st["io_ops"]["by_port"]["0xee"] == 800
    assert coalesced - 1 <= 200 + 1  # one exit per pass (+1: the first pass scans)
    assert off - 1 >= 3 * 200  # at extent 1 only the adjacent pair could be joined


def test_debug_exit_emulated_mid_block_stops_right_after_the_out():
    # Regression (found by the differential fuzzer): compiled blocks may run a few instructions
    # past an IO; the debug-exit OUT ended the run but the CLI after it ran too, so RIP was one
    # byte further than natively.
    code = assemble("""
        mov dx, 0x3f8
        in al, dx           ; traps (an IN), then the block/trace runs on
        mov al, 0x5a
        out 0xf4, al        ; ends the run: RIP must stop right after it
        cli
        hlt
    """)
    ref_r, ref, _ = run(code, "off")
    for p in ("fig5", "fig6", "fig7", "trace"):
        r, st, _ = run(code, p, 50)
        assert (r.end, r.exit_status) == (ref_r.end, ref_r.exit_status) == ("debug-exit", 0x5a)
        assert st["final_regs"] == ref["final_regs"], p
