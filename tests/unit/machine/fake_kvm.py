"""A stand-in for the KVM binding, so the machine's exit handling runs with made-up exits."""

from pykvmm.kvm import ioctls as K
from pykvmm.kvm.structs import KvmRegs, KvmRun, KvmSregs
from pykvmm.kvm.vcpu import Vcpu


class FakeVcpu(Vcpu):
    def __init__(self):  # no fd, no mmap: a bytearray stands in for the kvm_run page
        self.fd = -1
        self.page = bytearray(8192)
        self.page_size = len(self.page)
        self.kvm_run = KvmRun.from_buffer(self.page)
        self.sync = self.kvm_run.s.regs
        self.sync_regs_enabled = False
        self.regs = KvmRegs()
        self.sregs = KvmSregs()

    def set_cpuid2(self, cpuid):
        pass

    def get_regs(self):
        return self.regs

    def set_regs(self, regs):
        self.regs = regs
        self.sync.regs = regs

    def get_sregs(self):
        return self.sregs

    def set_sregs(self, sregs):
        self.sregs = sregs
        self.sync.sregs = sregs


class FakeVm:
    def __init__(self):
        self.regions = []
        self.vcpus = []

    def set_memory_region(self, guest_phys, size, host_addr, readonly=False, slot=None):
        self.regions.append((guest_phys, size, readonly))

    def set_tss_addr(self, addr):
        pass

    def create_vcpu(self, index=0):
        v = FakeVcpu()
        self.vcpus.append(v)
        return v

    def close(self):
        pass


class FakeKvm:
    def __init__(self):
        self.vm = FakeVm()

    def check_extension(self, cap):
        if cap == K.KVM_CAP_BINARY_STATS_FD:
            return 0
        if cap == K.KVM_CAP_SYNC_REGS:
            return 7
        return 1

    def supported_cpuid(self):
        return None

    def create_vm(self):
        return self.vm

    def close(self):
        pass
