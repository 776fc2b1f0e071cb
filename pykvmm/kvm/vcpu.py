"""Vcpu: a vCPU fd and its mapped kvm_run page.

``run()`` is the hottest function in pykvmm: one KVM_RUN and one typed exit value.  It reads the
exit fields with precompiled ``struct`` unpackers straight from the mapping (cheaper than ctypes
attribute access) and builds one NamedTuple.

Registers are reached through KVM_CAP_SYNC_REGS: with ``kvm_valid_regs`` set, KVM copies the
registers into the run page on every exit, and bits set in ``kvm_dirty_regs`` make it load them
back on the next entry.  On this host a GET_REGS or SET_REGS ioctl costs about 4.8 us, as much as
half an exit, while reading the page costs nothing extra.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct

from ..errors import KvmError
from . import exits as X
from . import ioctls as K
from ._libc import call, ioctl
from .structs import (RUN_EXIT_REASON, RUN_IMMEDIATE_EXIT, RUN_U, KvmGuestDebug, KvmInterrupt,
                      KvmRegs, KvmRun, KvmSregs, KvmTranslation, KvmVcpuEvents)

_REASON = struct.Struct("<I")
_IO = struct.Struct("<BBHIQ")  # direction, size, port, count, data_offset
_MMIO = struct.Struct("<Q8sIB")  # phys_addr, data, len, is_write
_INTERNAL = struct.Struct("<II")
_FAIL = struct.Struct("<QI")
_DEBUG = struct.Struct("<IIQQQ")
_EMU_FAIL = struct.Struct("<IIQB15s")

_EXIT_IO, _EXIT_MMIO, _EXIT_HLT = K.KVM_EXIT_IO, K.KVM_EXIT_MMIO, K.KVM_EXIT_HLT
_IO_OUT = K.KVM_EXIT_IO_OUT
_EINTR, _EAGAIN = errno.EINTR, errno.EAGAIN


class Vcpu:
    def __init__(self, vm, fd: int, mmap_size: int):
        self.vm = vm
        self.fd = fd
        self.page = mmap.mmap(fd, mmap_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.page_size = mmap_size
        self.kvm_run = KvmRun.from_buffer(self.page)
        self.sync = self.kvm_run.s.regs  # KvmSyncRegs view into the page
        self.sync_regs_enabled = False

    # -- running ----------------------------------------------------------------------------------

    def run(self):
        """One KVM_RUN; returns the exit as a value from pykvmm.kvm.exits."""
        if ioctl(self.fd, K.KVM_RUN, 0) < 0:
            err = ctypes.get_errno()
            if err == _EINTR or err == _EAGAIN:
                return X.INTERRUPTED
            raise KvmError(f"KVM_RUN failed: [Errno {err}] {os.strerror(err)}")
        return self.decode_exit()

    def decode_exit(self):
        page = self.page
        reason = _REASON.unpack_from(page, RUN_EXIT_REASON)[0]
        if reason == _EXIT_IO:
            direction, size, port, count, off = _IO.unpack_from(page, RUN_U)
            n = size * count
            if off + n > self.page_size or size not in (1, 2, 4):
                return X.Unsupported(reason, f"io exit with bad data window {off:#x}+{n}")
            if direction == _IO_OUT:
                return X.IoOut(port, size, count, page[off:off + n])
            return X.IoIn(port, size, count, off)
        if reason == _EXIT_MMIO:
            addr, data, length, is_write = _MMIO.unpack_from(page, RUN_U)
            if length > 8:
                return X.Unsupported(reason, f"mmio exit with length {length}")
            if is_write:
                return X.MmioWrite(addr, length, data[:length])
            return X.MmioRead(addr, length)
        if reason == _EXIT_HLT:
            return X.HLT
        if reason == K.KVM_EXIT_SHUTDOWN:
            return X.SHUTDOWN
        if reason == K.KVM_EXIT_INTR:
            return X.INTERRUPTED
        if reason == K.KVM_EXIT_IRQ_WINDOW_OPEN:
            return X.IRQ_WINDOW_OPEN
        if reason == K.KVM_EXIT_FAIL_ENTRY:
            hw, cpu = _FAIL.unpack_from(page, RUN_U)
            return X.FailEntry(hw, cpu)
        if reason == K.KVM_EXIT_INTERNAL_ERROR:
            suberror, ndata = _INTERNAL.unpack_from(page, RUN_U)
            ndata = min(ndata, 16)
            data = struct.unpack_from(f"<{ndata}Q", page, RUN_U + 8)
            insn = b""
            if suberror == K.KVM_INTERNAL_ERROR_EMULATION:
                _, _, flags, size, raw = _EMU_FAIL.unpack_from(page, RUN_U)
                if flags & K.KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES:
                    insn = raw[:min(size, 15)]
            return X.InternalError(suberror, data, insn)
        if reason == K.KVM_EXIT_DEBUG:
            exc, _, pc, dr6, dr7 = _DEBUG.unpack_from(page, RUN_U)
            return X.Debug(exc, pc, dr6, dr7)
        if reason == K.KVM_EXIT_SYSTEM_EVENT:
            return X.SystemEvent(_REASON.unpack_from(page, RUN_U)[0])
        return X.Unsupported(reason, K.EXIT_REASON_NAMES.get(reason, f"exit reason {reason}"))

    def complete_in(self, exit: X.IoIn, data: bytes) -> None:
        """Put an IN's values where KVM picks them up on the next KVM_RUN."""
        n = exit.size * exit.count
        if len(data) != n:
            raise ValueError(f"IN completion needs {n} bytes, got {len(data)}")
        self.page[exit.data_offset:exit.data_offset + n] = data

    def complete_mmio_read(self, data: bytes) -> None:
        """Put an MMIO read's value into kvm_run.mmio.data (picked up on the next KVM_RUN)."""
        self.page[RUN_U + 8:RUN_U + 8 + len(data)] = data

    @property
    def immediate_exit(self) -> int:
        return self.page[RUN_IMMEDIATE_EXIT]

    @immediate_exit.setter
    def immediate_exit(self, value: int) -> None:
        # A single byte store: safe to do from another thread (the kicker) while KVM_RUN runs.
        self.page[RUN_IMMEDIATE_EXIT] = 1 if value else 0

    # -- registers --------------------------------------------------------------------------------

    def enable_sync_regs(self, which: int = K.KVM_SYNC_X86_REGS | K.KVM_SYNC_X86_SREGS) -> None:
        """Ask KVM to copy the registers into the run page on every exit."""
        self.kvm_run.kvm_valid_regs = which
        self.sync_regs_enabled = True

    def mark_regs_dirty(self, which: int = K.KVM_SYNC_X86_REGS) -> None:
        """The sync-regs copy was changed: KVM loads it on the next entry."""
        self.kvm_run.kvm_dirty_regs |= which

    def get_regs(self) -> KvmRegs:
        regs = KvmRegs()
        call(self.fd, K.KVM_GET_REGS, ctypes.byref(regs), "KVM_GET_REGS")
        return regs

    def set_regs(self, regs: KvmRegs) -> None:
        call(self.fd, K.KVM_SET_REGS, ctypes.byref(regs), "KVM_SET_REGS")

    def get_sregs(self) -> KvmSregs:
        sregs = KvmSregs()
        call(self.fd, K.KVM_GET_SREGS, ctypes.byref(sregs), "KVM_GET_SREGS")
        return sregs

    def set_sregs(self, sregs: KvmSregs) -> None:
        call(self.fd, K.KVM_SET_SREGS, ctypes.byref(sregs), "KVM_SET_SREGS")

    def get_events(self) -> KvmVcpuEvents:
        ev = KvmVcpuEvents()
        call(self.fd, K.KVM_GET_VCPU_EVENTS, ctypes.byref(ev), "KVM_GET_VCPU_EVENTS")
        return ev

    def set_cpuid2(self, cpuid) -> None:
        call(self.fd, K.KVM_SET_CPUID2, ctypes.byref(cpuid), "KVM_SET_CPUID2")

    def interrupt(self, vector: int) -> None:
        """KVM_INTERRUPT: queue an external interrupt (userspace irqchip)."""
        irq = KvmInterrupt(irq=vector)
        call(self.fd, K.KVM_INTERRUPT, ctypes.byref(irq), "KVM_INTERRUPT")

    def set_guest_debug(self, singlestep: bool) -> None:
        dbg = KvmGuestDebug()
        dbg.control = (K.KVM_GUESTDBG_ENABLE | K.KVM_GUESTDBG_SINGLESTEP) if singlestep else 0
        call(self.fd, K.KVM_SET_GUEST_DEBUG, ctypes.byref(dbg), "KVM_SET_GUEST_DEBUG")

    def translate(self, linear: int) -> KvmTranslation:
        tr = KvmTranslation(linear_address=linear)
        call(self.fd, K.KVM_TRANSLATE, ctypes.byref(tr), "KVM_TRANSLATE")
        return tr

    def set_signal_mask(self, signals: set[int] | None) -> None:
        """KVM_SET_SIGNAL_MASK: the thread's blocked set while inside KVM_RUN (None: no mask)."""
        if signals is None:
            call(self.fd, K.KVM_SET_SIGNAL_MASK, None, "KVM_SET_SIGNAL_MASK")
            return
        mask = 0
        for s in signals:
            mask |= 1 << (int(s) - 1)

        class _Mask(ctypes.Structure):
            _fields_ = [("len", ctypes.c_uint32), ("sigset", ctypes.c_uint64)]

        call(self.fd, K.KVM_SET_SIGNAL_MASK, ctypes.byref(_Mask(8, mask)), "KVM_SET_SIGNAL_MASK")

    def stats_fd(self) -> int:
        return call(self.fd, K.KVM_GET_STATS_FD, 0, "KVM_GET_STATS_FD")

    def close(self) -> None:
        if self.fd < 0:
            return
        del self.sync
        del self.kvm_run
        try:
            self.page.close()
        except BufferError:
            pass
        os.close(self.fd)
        self.fd = -1


__all__ = ["Vcpu"]
