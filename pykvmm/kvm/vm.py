"""Vm: one KVM virtual machine fd. It registers memory slots and creates Vcpu objects."""

from __future__ import annotations

import ctypes
import os

from . import ioctls as K
from ._libc import call
from .structs import KvmCoalescedMmioZone, KvmUserspaceMemoryRegion


class Vm:
    def __init__(self, kvm, fd: int):
        self.kvm = kvm
        self.fd = fd
        self._next_slot = 0
        self.vcpus: list = []

    def set_memory_region(self, guest_phys: int, size: int, host_addr: int, readonly: bool = False,
                          slot: int | None = None) -> int:
        """KVM_SET_USER_MEMORY_REGION; read-only slots use KVM_MEM_READONLY (writes exit as MMIO)."""
        if slot is None:
            slot = self._next_slot
            self._next_slot += 1
        region = KvmUserspaceMemoryRegion(slot=slot, flags=K.KVM_MEM_READONLY if readonly else 0,
                                          guest_phys_addr=guest_phys, memory_size=size,
                                          userspace_addr=host_addr)
        call(self.fd, K.KVM_SET_USER_MEMORY_REGION, ctypes.byref(region), "KVM_SET_USER_MEMORY_REGION")
        return slot

    def set_tss_addr(self, addr: int) -> None:
        # Needed on Intel hosts without unrestricted guest, which run real mode in vm86 through a TSS.
        call(self.fd, K.KVM_SET_TSS_ADDR, addr, "KVM_SET_TSS_ADDR")

    def set_identity_map_addr(self, addr: int) -> None:
        value = ctypes.c_uint64(addr)
        call(self.fd, K.KVM_SET_IDENTITY_MAP_ADDR, ctypes.byref(value), "KVM_SET_IDENTITY_MAP_ADDR")

    def register_coalesced_io(self, addr: int, size: int, pio: bool) -> None:
        zone = KvmCoalescedMmioZone(addr=addr, size=size, pio=1 if pio else 0)
        call(self.fd, K.KVM_REGISTER_COALESCED_MMIO, ctypes.byref(zone), "KVM_REGISTER_COALESCED_MMIO")

    def create_vcpu(self, index: int = 0):
        from .vcpu import Vcpu

        fd = call(self.fd, K.KVM_CREATE_VCPU, index, "KVM_CREATE_VCPU")
        vcpu = Vcpu(self, fd, self.kvm.vcpu_mmap_size)
        self.vcpus.append(vcpu)
        return vcpu

    def close(self) -> None:
        for v in self.vcpus:
            v.close()
        self.vcpus.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
