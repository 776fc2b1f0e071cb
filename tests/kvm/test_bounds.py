"""Bounds against a hostile guest, driven by a guest (issue 8, section 2; the unit tests feed a
million blocks straight into the tables): a guest that copies an IO block to ever new addresses
and calls it there produces thousands of distinct sites.  With small caps (--table-size 64,
--decode-cache 256) the block table and the emulator's caches stay at their caps, and every mode
still gives the uncoalesced results."""

from __future__ import annotations

import pytest

from pykvmm.coalesce import engine as E
from pykvmm.machine.machine import Machine, MachineConfig

from . import fuzz as F
from .helpers import assemble

pytestmark = pytest.mark.kvm

TABLE, CACHE = 64, 256
CALLS = 600

GUEST = f"""
        mov dx, 0x3ff           ; COM1 scratch register: a device that remembers
        xor al, al
        mov di, 0x1000
        mov bp, {CALLS}
    next:
        mov si, template
        mov cx, template_end - template
        push di
        rep movsb               ; a fresh copy of the block at DI
        pop di
        call di
        add di, 7               ; the next copy lands at a new address (a new site)
        cmp di, 0x7000
        jb same_page
        mov di, 0x1000
    same_page:
        dec bp
        jnz next
        mov dx, 0x3f8
        out dx, al
        mov al, 0
        out 0xf4, al
    template:
        in al, dx
        inc al
        out dx, al
        out dx, al
        ret
    template_end:
"""


def test_endless_distinct_sites_keep_the_caps_and_the_results():
    code = assemble(GUEST)
    base = F.run_once(code, E.OFF, timeout=60)
    assert base.end == "debug-exit"
    assert base.serial == bytes([CALLS & 0xFF])
    for mode in (E.FIG5, E.FIG6, E.FIG7, "trace"):
        if mode not in E.POLICIES:
            continue
        with Machine(MachineConfig(serial="null", serial_input=False)) as m:
            m.load_guest(code)
            m.engine = E.CoalescingEngine(m, mode, table_size=TABLE)
            m.engine.emu.cache_limit = CACHE
            m.run(timeout=60)
            co = m.engine.stats()
            emu = m.engine.emu
            assert len(emu._cache) <= CACHE and len(emu._bcache) <= CACHE, mode
            if m.engine.table is not None:
                assert len(m.engine.table) <= TABLE, mode
                if mode != E.FIG6:  # Figure 6 hashes the block alone: every copy is one entry
                    assert m.engine.table.lru.evictions > 0, mode  # the cap was reached and held
            assert co["blocks_emulated"] > 0, mode
        other = F.run_once(code, mode, timeout=60)
        assert other.key() == base.key(), f"{mode}: {F.describe(base, other)}"


@pytest.mark.parametrize("mode", [E.FIG5, "trace"])
def test_emulation_per_exit_is_bounded_in_instructions_and_time(mode):
    """An endless loop with IO in it: every exit's emulation stops at the budget (instructions)
    or the deadline (time, and the run's --timeout), so the run still ends on time."""
    import time

    if mode not in E.POLICIES:
        pytest.skip(f"{mode} is not in this tree")
    # The OUT after the JMP is never executed, but a linear scan (fig5) sees it, so the whole
    # loop lies inside one block.
    code = assemble("""
        mov dx, 0x3ff
        out dx, al
    spin:
        out dx, al
        inc ax
        jmp spin
        out dx, al
    """)
    with Machine(MachineConfig(serial="null", serial_input=False)) as m:
        m.load_guest(code)
        m.engine = E.CoalescingEngine(m, mode, extent=50)
        t = time.monotonic()
        r = m.run(timeout=1.0)
        took = time.monotonic() - t
        co = m.engine.stats()
    assert r.end == "timeout" and took < 3.0, (r, took)
    assert co["blocks_emulated"] > 0
    per_block = co["instructions_emulated"] / co["blocks_emulated"]
    assert per_block <= E.BLOCK_BUDGET, per_block
    from pykvmm.x86 import stops as ST

    assert co["stops"].get(ST.BUDGET, 0) + co["stops"].get(ST.DEADLINE, 0) > 0, co["stops"]
