"""KVM's own coalesced IO ring: the baseline a Linux VMM would use instead of pykvmm's engine.

With KVM_REGISTER_COALESCED_MMIO a VMM names address ranges whose *writes* KVM need not exit
for: the kernel appends each write to a ring shared with userspace and resumes the guest at
once.  Reads still exit, and so does a write when the ring is full.  With the zone's ``pio``
flag (KVM_CAP_COALESCED_PIO, Linux 4.20) the range is a port range instead.

The ring lives in the vCPU's mmap, ``KVM_CHECK_EXTENSION(KVM_CAP_COALESCED_MMIO)`` pages after
kvm_run (that call returns the page index, not a boolean).  Its layout, from
include/uapi/linux/kvm.h::

    struct kvm_coalesced_mmio_ring { __u32 first, last; struct kvm_coalesced_mmio coalesced_mmio[]; };
    struct kvm_coalesced_mmio { __u64 phys_addr; __u32 len; union { __u32 pad; __u32 pio; }; __u8 data[8]; };

KVM writes at ``last`` and advances it; userspace consumes from ``first`` and advances that.  The
ring holds (PAGE_SIZE - 8) / 24 = 170 entries, one of which always stays empty to tell a full ring
from an empty one (virt/kvm/coalesced_mmio.c), so 169 writes fit between two exits.

**Ordering.** A buffered write happened before whatever caused the next exit, so the machine must
drain the ring into the buses, in order, before it handles any exit (a read of the UART's LSR
must see the THR writes that preceded it) and once more when the run ends.
"""

from __future__ import annotations

import struct

from ..errors import KvmError
from ..kvm import ioctls as K
from . import layout

PAGE_SIZE = 4096
_HEAD = struct.Struct("<II")  # first, last
_FIRST = struct.Struct("<I")
_ENTRY = struct.Struct("<QII8s")  # phys_addr, len, pio, data
RING_HEADER = _HEAD.size
ENTRY_SIZE = _ENTRY.size  # 24, as KvmCoalescedMmio in kvm/structs.py
MAX_ENTRIES = (PAGE_SIZE - RING_HEADER) // ENTRY_SIZE  # KVM_COALESCED_MMIO_MAX: 170
USABLE_ENTRIES = MAX_ENTRIES - 1

# The data registers whose writes the baseline buffers: COM1's THR (port 0x3F8; with DLAB=1 the
# same port is the divisor latch, which is harmless since order is kept) and the memory-mapped
# 16550's THR at 0xB0000.  One byte each, so no other register shares a zone.
DEFAULT_ZONES = ((layout.COM1_BASE, 1, True), (layout.MMIO_UART_BASE, 1, False))


class CoalescedRing:
    """Registers the zones and drains the ring into the machine's buses."""

    __slots__ = ("page", "base", "pio_write", "mmio_write", "zones", "drains", "writes",
                 "max_batch")

    def __init__(self, machine, zones=DEFAULT_ZONES) -> None:
        kvm = machine.kvm
        index = kvm.check_extension(K.KVM_CAP_COALESCED_MMIO)
        if index <= 0:
            raise KvmError("this KVM lacks KVM_CAP_COALESCED_MMIO; --coalesce kvm-ring cannot run")
        if any(pio for _, _, pio in zones) and not kvm.check_extension(K.KVM_CAP_COALESCED_PIO):
            raise KvmError("this KVM lacks KVM_CAP_COALESCED_PIO (Linux 4.20); --coalesce kvm-ring "
                           "cannot buffer port writes")
        vcpu = machine.vcpu
        if (index + 1) * PAGE_SIZE > vcpu.page_size:
            raise KvmError(f"the coalesced ring page {index} lies outside the vCPU mapping "
                           f"({vcpu.page_size:#x} bytes)")
        self.page = vcpu.page
        self.base = index * PAGE_SIZE
        self.pio_write = machine.pio.write
        self.mmio_write = machine.mmio.write
        self.zones = tuple(zones)
        for addr, size, pio in self.zones:
            machine.vm.register_coalesced_io(addr, size, pio)
        self.drains = 0  # drains that found at least one write
        self.writes = 0  # writes replayed into the buses
        self.max_batch = 0  # most writes found in the ring at once

    def drain(self) -> int:
        """Replay every buffered write, oldest first; returns how many."""
        page, base = self.page, self.base
        first, last = _HEAD.unpack_from(page, base)
        if first == last:
            return 0
        if first >= MAX_ENTRIES or last >= MAX_ENTRIES:
            raise KvmError(f"coalesced ring indices out of range: first {first}, last {last}")
        n = 0
        entry = _ENTRY.unpack_from
        while first != last:
            addr, length, pio, data = entry(page, base + RING_HEADER + first * ENTRY_SIZE)
            value = data[0] if length == 1 else int.from_bytes(data[:min(length, 8)], "little")
            if pio:
                self.pio_write(addr, length, value)
            else:
                self.mmio_write(addr, length, value)
            first += 1
            if first == MAX_ENTRIES:
                first = 0
            n += 1
        # Hand the slots back to KVM only after they have been consumed (the vCPU is not running:
        # this thread is the one that calls KVM_RUN).
        _FIRST.pack_into(page, base, first)
        self.drains += 1
        self.writes += n
        if n > self.max_batch:
            self.max_batch = n
        return n

    def stats(self) -> dict:
        return {
            "policy": "kvm-ring",
            "zones": [{"addr": f"{a:#x}", "size": s, "pio": bool(p)} for a, s, p in self.zones],
            "ring_entries": USABLE_ENTRIES, "drains": self.drains, "ring_writes": self.writes,
            "max_batch": self.max_batch,
        }


__all__ = ["CoalescedRing", "DEFAULT_ZONES", "MAX_ENTRIES", "USABLE_ENTRIES"]
