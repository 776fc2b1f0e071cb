"""pykvmm's own exit counts against KVM's binary statistics, for a guest with a known number of OUTs.

What is comparable depends on the backend:
* KVM's per-vCPU ``exits`` counts every exit, including ones KVM handles in the kernel and never
  shows userspace (host interrupts, preemption).  It can therefore only be *at least* pykvmm's
  count of KVM_RUN returns, and a little above it on a busy host.
* ``io_exits`` counts port-IO exits on hardware KVM (VMX/SVM).  On this host's software backend
  (kvm_pvm) real-mode code runs in KVM's instruction emulator and ``io_exits`` stays 0, so the
  test accepts either 0 or pykvmm's exact count: never anything else.
* ``mmio_exits`` is exact on both, and this guest does no MMIO.
"""

import pytest

from pykvmm.machine.machine import Machine, MachineConfig

from .helpers import GUESTS

pytestmark = pytest.mark.kvm

OUTS = 200_000  # out_loop.asm: 4 x 50,000 OUTs to port 0xEE, then one OUT to 0xF4


def test_out_loop_exit_count_matches_kvm_stats():
    with Machine(MachineConfig(serial="null")) as m:
        m.load_guest((GUESTS / "out_loop.bin").read_bytes())
        before = m.kvm_stats.read()
        r = m.run(timeout=60)
        after = m.kvm_stats.read()
        assert r.end == "debug-exit"
        ours = m.exit_counts
        assert ours["io"] == OUTS + 1
        assert m.pio.io_ops[0xEE] == OUTS
        assert m.pio.unclaimed_writes[0xEE] == OUTS
        kvm_exits = after["exits"] - before["exits"]
        # Host noise adds exits KVM handles itself; 1% is generous for a run of a few seconds.
        assert ours["total"] <= kvm_exits <= ours["total"] * 1.01 + 50
        io_exits = after["io_exits"] - before["io_exits"]
        assert io_exits in (0, ours["io"])
        assert after["mmio_exits"] - before["mmio_exits"] == 0


def test_mmio_exits_match_kvm_stats_exactly():
    from .helpers import assemble

    # 1000 reads of the unbacked device hole: each is one KVM_EXIT_MMIO.
    code = assemble("""
        mov ax, 0xA000
        mov ds, ax
        mov cx, 1000
    again:
        mov al, [0]
        loop again
        xor al, al
        out 0xf4, al
    """)
    with Machine(MachineConfig(serial="null")) as m:
        m.load_guest(code)
        before = m.kvm_stats.read()
        assert m.run(timeout=30).end == "debug-exit"
        after = m.kvm_stats.read()
        assert m.exit_counts["mmio"] == 1000
        assert after["mmio_exits"] - before["mmio_exits"] == 1000
        assert m.mmio.io_ops == {0xA0000: 1000}
        assert m.final_regs()["rax"] & 0xFF == 0  # the last read returned 0xFF, then xor
