"""What this KVM does after each kind of IO exit, learned by a self-probe at start-up.

Two behaviours were measured, and the engine must be right on both:

* This development host (KVM's software backend, kvm_pvm, where real-mode code runs in KVM's
  instruction emulator): at an OUT or MMIO-write exit RIP is already past the instruction; at an IN
  or MMIO-read exit RIP still points at it, and the pending completion on the next KVM_RUN writes
  the value *and* sets RIP to "instruction + length" even if userspace moved RIP meanwhile (the
  value is then dropped).  So a block may start at an OUT exit straight away, but after an IN only
  once the IN has been completed.
* Hardware VMX/SVM (upstream kernel source, complete_fast_pio_out/in): RIP is not advanced at an
  OUT exit either, and a completion is dropped when userspace moved RIP.

The probe runs each kind of trapping access in a scratch VM, writes a marker RIP and RBX into the
sync-regs area, and runs KVM_RUN with immediate_exit=1, which performs the pending completion
without running the guest.  If the markers survive, the engine may emulate directly from the
exit's registers ("direct"); if not, it must first complete the access with such a run (a
"completion run", counted in the stats), and the probe checks that this completion leaves RIP past
the instruction with the IN's value in AL.  A kind that passes neither check is not coalesced.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import struct

from ..kvm import ioctls as K
from ..kvm._libc import ioctl
from ..kvm.structs import RUN_IMMEDIATE_EXIT, RUN_S, RUN_U, KvmRun
from . import interpreter as I

DIRECT = "direct"
COMPLETE_FIRST = "complete-first"
UNSAFE = "unsafe"

_CODE = 0x1000
_MMIO_ADDR = 0x20000  # outside the probe VM's only memory slot, so accesses exit as MMIO
_PORT = 0xE0
_VALUE = 0x5A
# Each probe: bytes at _CODE, the instruction's length.
_PROBES = {
    I.PIO_OUT: (bytes([0xE6, _PORT]), 2),            # out 0xE0, al
    I.PIO_IN: (bytes([0xE4, _PORT]), 2),             # in al, 0xE0
    # ds = 0x2000 (base 0x20000): mov [0], al / mov al, [0]
    I.MMIO_WRITE: (bytes([0xA2, 0x00, 0x00]), 3),
    I.MMIO_READ: (bytes([0xA0, 0x00, 0x00]), 3),
}
_MARK_RIP = 0x1800
_MARK_RBX = 0x1234

_cache: dict[int, dict[str, str]] = {}


def _run(vcpu) -> int:
    r = ioctl(vcpu.fd, K.KVM_RUN, 0)
    return 0 if r >= 0 else ctypes.get_errno()


def probe(kvm) -> dict[str, str]:
    """{exit kind: DIRECT | COMPLETE_FIRST | UNSAFE} for this host (cached per process)."""
    key = id(type(kvm))
    if key not in _cache:
        _cache[key] = {kind: _probe_kind(kvm, kind) for kind in I.KINDS}
    return _cache[key]


def _fresh(kvm, kind):
    vm = kvm.create_vm()
    mem = mmap.mmap(-1, 0x10000, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    code, _ = _PROBES[kind]
    mem[_CODE:_CODE + len(code)] = code
    mem[_MARK_RIP] = 0xF4  # hlt, never reached (immediate_exit)
    host = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    vm.set_memory_region(0, 0x10000, host)
    vm.set_tss_addr(0xFFFBD000)
    vcpu = vm.create_vcpu(0)
    vcpu.enable_sync_regs(K.KVM_SYNC_X86_REGS | K.KVM_SYNC_X86_SREGS)
    sregs = vcpu.get_sregs()
    for name in ("cs", "ds", "es", "fs", "gs", "ss"):
        seg = getattr(sregs, name)
        seg.selector, seg.base, seg.limit = 0, 0, 0xFFFF
    sregs.ds.selector, sregs.ds.base = _MMIO_ADDR >> 4, _MMIO_ADDR
    sregs.cr0 &= ~1
    vcpu.set_sregs(sregs)
    regs = vcpu.get_regs()
    regs.rip, regs.rsp, regs.rflags, regs.rax, regs.rbx = _CODE, 0x800, 2, 0, 0
    vcpu.set_regs(regs)
    return vm, mem, vcpu


def _close(vm, mem) -> None:
    vm.close()
    try:
        mem.close()
    except BufferError:
        pass


def _to_exit(vcpu, kind) -> bool:
    """Run to the probe's exit; provide the value for reads."""
    if _run(vcpu) != 0:
        return False
    page = vcpu.page
    reason = struct.unpack_from("<I", page, KvmRun.exit_reason.offset)[0]
    if kind in (I.PIO_OUT, I.PIO_IN):
        if reason != K.KVM_EXIT_IO:
            return False
        if kind == I.PIO_IN:
            off = struct.unpack_from("<Q", page, RUN_U + 8)[0]
            page[off] = _VALUE
        return True
    if reason != K.KVM_EXIT_MMIO:
        return False
    if kind == I.MMIO_READ:
        page[RUN_U + 8] = _VALUE
    return True


def _completion_run(vcpu) -> int:
    vcpu.page[RUN_IMMEDIATE_EXIT] = 1
    err = _run(vcpu)
    vcpu.page[RUN_IMMEDIATE_EXIT] = 0
    return err


def _probe_kind(kvm, kind: str) -> str:
    _, length = _PROBES[kind]
    # 1. Are registers written into sync regs at the exit left alone by the pending completion?
    vm, mem, vcpu = _fresh(kvm, kind)
    try:
        if not _to_exit(vcpu, kind):
            return UNSAFE
        regs = vcpu.sync.regs
        # Direct emulation also needs RIP already past the trapping instruction at the exit
        # (true here for OUT; not on hardware VMX/SVM, where the completion advances it).
        advanced = regs.rip == _CODE + length
        regs.rip, regs.rbx = _MARK_RIP, _MARK_RBX
        vcpu.kvm_run.kvm_dirty_regs |= K.KVM_SYNC_X86_REGS
        if _completion_run(vcpu) not in (errno.EINTR, errno.EAGAIN):
            return UNSAFE
        direct = advanced and regs.rip == _MARK_RIP and regs.rbx == _MARK_RBX
        # Reads must also have delivered their value somewhere we can see: with direct handling
        # the value must already be in AL at the exit, which no KVM does, so reads need step 2.
        if direct and kind in (I.PIO_OUT, I.MMIO_WRITE):
            return DIRECT
    finally:
        _close(vm, mem)
    # 2. Does a completion run finish the instruction (RIP past it, AL = the value)?
    vm, mem, vcpu = _fresh(kvm, kind)
    try:
        if not _to_exit(vcpu, kind):
            return UNSAFE
        if _completion_run(vcpu) not in (errno.EINTR, errno.EAGAIN):
            return UNSAFE
        regs = vcpu.sync.regs
        if regs.rip != _CODE + length:
            return UNSAFE
        if kind in (I.PIO_IN, I.MMIO_READ) and regs.rax & 0xFF != _VALUE:
            return UNSAFE
        return COMPLETE_FIRST
    finally:
        _close(vm, mem)


__all__ = ["probe", "DIRECT", "COMPLETE_FIRST", "UNSAFE", "RUN_S"]
