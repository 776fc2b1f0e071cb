"""Struct layouts and ioctl numbers against <linux/kvm.h>, compiled by the C compiler.

The header is the oracle: a small C program prints sizeof/offsetof and the ioctl macros, and the
ctypes mirrors must agree.  The fixed sizes named in the kernel docs are checked without a
compiler too.
"""

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from pykvmm.kvm import ioctls as K
from pykvmm.kvm import structs as S

HEADER = Path("/usr/include/linux/kvm.h")


def test_kvm_regs_is_144_bytes():
    assert ctypes.sizeof(S.KvmRegs) == 144


def test_kvm_sregs_is_312_bytes():
    assert ctypes.sizeof(S.KvmSregs) == 312


def test_kvm_vcpu_events_is_64_bytes():
    assert ctypes.sizeof(S.KvmVcpuEvents) == 64


C_PROBE = r"""
#include <linux/kvm.h>
#include <stddef.h>
#include <stdio.h>
#define P(name, v) printf("%s %llu\n", name, (unsigned long long)(v))
int main(void) {
    P("sizeof_regs", sizeof(struct kvm_regs));
    P("sizeof_sregs", sizeof(struct kvm_sregs));
    P("sizeof_segment", sizeof(struct kvm_segment));
    P("sizeof_events", sizeof(struct kvm_vcpu_events));
    P("sizeof_region", sizeof(struct kvm_userspace_memory_region));
    P("sizeof_guest_debug", sizeof(struct kvm_guest_debug));
    P("sizeof_translation", sizeof(struct kvm_translation));
    P("sizeof_cpuid_entry2", sizeof(struct kvm_cpuid_entry2));
    P("sizeof_zone", sizeof(struct kvm_coalesced_mmio_zone));
    P("sizeof_stats_header", sizeof(struct kvm_stats_header));
    P("sizeof_stats_desc", sizeof(struct kvm_stats_desc));
    P("run_exit_reason", offsetof(struct kvm_run, exit_reason));
    P("run_immediate_exit", offsetof(struct kvm_run, immediate_exit));
    P("run_ready_for_interrupt_injection", offsetof(struct kvm_run, ready_for_interrupt_injection));
    P("run_if_flag", offsetof(struct kvm_run, if_flag));
    P("run_io_direction", offsetof(struct kvm_run, io.direction));
    P("run_io_size", offsetof(struct kvm_run, io.size));
    P("run_io_port", offsetof(struct kvm_run, io.port));
    P("run_io_count", offsetof(struct kvm_run, io.count));
    P("run_io_data_offset", offsetof(struct kvm_run, io.data_offset));
    P("run_mmio_phys_addr", offsetof(struct kvm_run, mmio.phys_addr));
    P("run_mmio_data", offsetof(struct kvm_run, mmio.data));
    P("run_mmio_len", offsetof(struct kvm_run, mmio.len));
    P("run_mmio_is_write", offsetof(struct kvm_run, mmio.is_write));
    P("run_internal_suberror", offsetof(struct kvm_run, internal.suberror));
    P("run_internal_data", offsetof(struct kvm_run, internal.data));
    P("run_valid_regs", offsetof(struct kvm_run, kvm_valid_regs));
    P("run_dirty_regs", offsetof(struct kvm_run, kvm_dirty_regs));
    P("run_s", offsetof(struct kvm_run, s));
    P("KVM_RUN", KVM_RUN);
    P("KVM_GET_REGS", KVM_GET_REGS);
    P("KVM_SET_REGS", KVM_SET_REGS);
    P("KVM_GET_SREGS", KVM_GET_SREGS);
    P("KVM_SET_SREGS", KVM_SET_SREGS);
    P("KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION);
    P("KVM_CREATE_VCPU", KVM_CREATE_VCPU);
    P("KVM_GET_SUPPORTED_CPUID", KVM_GET_SUPPORTED_CPUID);
    P("KVM_SET_CPUID2", KVM_SET_CPUID2);
    P("KVM_SET_GUEST_DEBUG", KVM_SET_GUEST_DEBUG);
    P("KVM_TRANSLATE", KVM_TRANSLATE);
    P("KVM_INTERRUPT", KVM_INTERRUPT);
    P("KVM_SET_SIGNAL_MASK", KVM_SET_SIGNAL_MASK);
    P("KVM_GET_STATS_FD", KVM_GET_STATS_FD);
    P("KVM_SET_TSS_ADDR", KVM_SET_TSS_ADDR);
    P("KVM_REGISTER_COALESCED_MMIO", KVM_REGISTER_COALESCED_MMIO);
    P("KVM_GET_VCPU_EVENTS", KVM_GET_VCPU_EVENTS);
    P("KVM_SET_VCPU_EVENTS", KVM_SET_VCPU_EVENTS);
    P("KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION);
    P("KVM_GET_VCPU_MMAP_SIZE", KVM_GET_VCPU_MMAP_SIZE);
    return 0;
}
"""


@pytest.fixture(scope="module")
def header_facts(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not HEADER.exists():
        pytest.skip("needs a C compiler and <linux/kvm.h> (Debian: gcc, linux-libc-dev)")
    d = tmp_path_factory.mktemp("kvmh")
    src, exe = d / "probe.c", d / "probe"
    src.write_text(C_PROBE)
    subprocess.run([cc, "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


def test_struct_sizes_match_the_header(header_facts):
    f = header_facts
    assert ctypes.sizeof(S.KvmRegs) == f["sizeof_regs"]
    assert ctypes.sizeof(S.KvmSregs) == f["sizeof_sregs"]
    assert ctypes.sizeof(S.KvmSegment) == f["sizeof_segment"]
    assert ctypes.sizeof(S.KvmVcpuEvents) == f["sizeof_events"]
    assert ctypes.sizeof(S.KvmUserspaceMemoryRegion) == f["sizeof_region"]
    assert ctypes.sizeof(S.KvmGuestDebug) == f["sizeof_guest_debug"]
    assert ctypes.sizeof(S.KvmTranslation) == f["sizeof_translation"]
    assert ctypes.sizeof(S.KvmCpuidEntry2) == f["sizeof_cpuid_entry2"]
    assert ctypes.sizeof(S.KvmCoalescedMmioZone) == f["sizeof_zone"]
    assert ctypes.sizeof(S.KvmStatsHeader) == f["sizeof_stats_header"]
    assert ctypes.sizeof(S.KvmStatsDesc) == f["sizeof_stats_desc"]


def test_kvm_run_io_and_mmio_offsets_match_the_header(header_facts):
    f = header_facts
    R = S.KvmRun
    u = R.u.offset
    assert R.exit_reason.offset == f["run_exit_reason"]
    assert R.immediate_exit.offset == f["run_immediate_exit"]
    assert R.ready_for_interrupt_injection.offset == f["run_ready_for_interrupt_injection"]
    assert R.if_flag.offset == f["run_if_flag"]
    assert u + S.KvmRunIo.direction.offset == f["run_io_direction"]
    assert u + S.KvmRunIo.size.offset == f["run_io_size"]
    assert u + S.KvmRunIo.port.offset == f["run_io_port"]
    assert u + S.KvmRunIo.count.offset == f["run_io_count"]
    assert u + S.KvmRunIo.data_offset.offset == f["run_io_data_offset"]
    assert u + S.KvmRunMmio.phys_addr.offset == f["run_mmio_phys_addr"]
    assert u + S.KvmRunMmio.data.offset == f["run_mmio_data"]
    assert u + S.KvmRunMmio.len.offset == f["run_mmio_len"]
    assert u + S.KvmRunMmio.is_write.offset == f["run_mmio_is_write"]
    assert u + S.KvmRunInternal.suberror.offset == f["run_internal_suberror"]
    assert u + S.KvmRunInternal.data.offset == f["run_internal_data"]
    assert R.kvm_valid_regs.offset == f["run_valid_regs"]
    assert R.kvm_dirty_regs.offset == f["run_dirty_regs"]
    assert R.s.offset == f["run_s"]


@pytest.mark.parametrize("name", [
    "KVM_RUN", "KVM_GET_REGS", "KVM_SET_REGS", "KVM_GET_SREGS", "KVM_SET_SREGS",
    "KVM_SET_USER_MEMORY_REGION", "KVM_CREATE_VCPU", "KVM_GET_SUPPORTED_CPUID", "KVM_SET_CPUID2",
    "KVM_SET_GUEST_DEBUG", "KVM_TRANSLATE", "KVM_INTERRUPT", "KVM_SET_SIGNAL_MASK", "KVM_GET_STATS_FD",
    "KVM_SET_TSS_ADDR", "KVM_REGISTER_COALESCED_MMIO", "KVM_GET_VCPU_EVENTS", "KVM_SET_VCPU_EVENTS",
    "KVM_CHECK_EXTENSION", "KVM_GET_VCPU_MMAP_SIZE"])
def test_ioctl_number_matches_the_header(header_facts, name):
    assert getattr(K, name) == header_facts[name]
