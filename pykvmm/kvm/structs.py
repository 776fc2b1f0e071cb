"""ctypes mirrors of the KVM UAPI structs (x86-64), with their sizes checked by tests.

Layouts follow include/uapi/linux/kvm.h and arch/x86/include/uapi/asm/kvm.h.
"""

import ctypes as C

u8, u16, u32, u64, s16 = C.c_uint8, C.c_uint16, C.c_uint32, C.c_uint64, C.c_int16


class KvmRegs(C.Structure):  # 144 bytes
    _fields_ = [(n, u64) for n in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


class KvmSegment(C.Structure):  # 24 bytes
    _fields_ = [("base", u64), ("limit", u32), ("selector", u16), ("type", u8), ("present", u8),
                ("dpl", u8), ("db", u8), ("s", u8), ("l", u8), ("g", u8), ("avl", u8),
                ("unusable", u8), ("padding", u8)]


class KvmDtable(C.Structure):  # 16 bytes
    _fields_ = [("base", u64), ("limit", u16), ("padding", u16 * 3)]


SEGMENT_NAMES = ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")


class KvmSregs(C.Structure):  # 312 bytes
    _fields_ = [(n, KvmSegment) for n in SEGMENT_NAMES] + [
        ("gdt", KvmDtable), ("idt", KvmDtable),
        ("cr0", u64), ("cr2", u64), ("cr3", u64), ("cr4", u64), ("cr8", u64), ("efer", u64),
        ("apic_base", u64), ("interrupt_bitmap", u64 * 4)]


class _EvException(C.Structure):
    _fields_ = [("injected", u8), ("nr", u8), ("has_error_code", u8), ("pending", u8),
                ("error_code", u32)]


class _EvInterrupt(C.Structure):
    _fields_ = [("injected", u8), ("nr", u8), ("soft", u8), ("shadow", u8)]


class _EvNmi(C.Structure):
    _fields_ = [("injected", u8), ("pending", u8), ("masked", u8), ("pad", u8)]


class _EvSmi(C.Structure):
    _fields_ = [("smm", u8), ("pending", u8), ("smm_inside_nmi", u8), ("latched_init", u8)]


class KvmVcpuEvents(C.Structure):  # 64 bytes
    _fields_ = [("exception", _EvException), ("interrupt", _EvInterrupt), ("nmi", _EvNmi),
                ("sipi_vector", u32), ("flags", u32), ("smi", _EvSmi),
                ("triple_fault_pending", u8), ("reserved", u8 * 26), ("exception_has_payload", u8),
                ("exception_payload", u64)]


class KvmSyncRegs(C.Structure):
    _fields_ = [("regs", KvmRegs), ("sregs", KvmSregs), ("events", KvmVcpuEvents)]


class KvmRunIo(C.Structure):
    _fields_ = [("direction", u8), ("size", u8), ("port", u16), ("count", u32), ("data_offset", u64)]


class KvmRunMmio(C.Structure):
    _fields_ = [("phys_addr", u64), ("data", u8 * 8), ("len", u32), ("is_write", u8)]


class KvmRunInternal(C.Structure):
    _fields_ = [("suberror", u32), ("ndata", u32), ("data", u64 * 16)]


class KvmRunEmulationFailure(C.Structure):
    _fields_ = [("suberror", u32), ("ndata", u32), ("flags", u64), ("insn_size", u8),
                ("insn_bytes", u8 * 15)]


class KvmRunFailEntry(C.Structure):
    _fields_ = [("hardware_entry_failure_reason", u64), ("cpu", u32)]


class KvmDebugExitArch(C.Structure):
    _fields_ = [("exception", u32), ("pad", u32), ("pc", u64), ("dr6", u64), ("dr7", u64)]


class KvmRunSystemEvent(C.Structure):
    _fields_ = [("type", u32), ("ndata", u32), ("data", u64 * 16)]


class _ExitUnion(C.Union):
    _fields_ = [("io", KvmRunIo), ("mmio", KvmRunMmio), ("internal", KvmRunInternal),
                ("emulation_failure", KvmRunEmulationFailure), ("fail_entry", KvmRunFailEntry),
                ("debug", KvmDebugExitArch), ("system_event", KvmRunSystemEvent),
                ("padding", C.c_char * 256)]


class _SyncUnion(C.Union):
    _fields_ = [("regs", KvmSyncRegs), ("padding", C.c_char * 2048)]


class KvmRun(C.Structure):
    _fields_ = [("request_interrupt_window", u8), ("immediate_exit", u8), ("padding1", u8 * 6),
                ("exit_reason", u32), ("ready_for_interrupt_injection", u8), ("if_flag", u8),
                ("flags", u16), ("cr8", u64), ("apic_base", u64), ("u", _ExitUnion),
                ("kvm_valid_regs", u64), ("kvm_dirty_regs", u64), ("s", _SyncUnion)]


class KvmUserspaceMemoryRegion(C.Structure):  # 32 bytes
    _fields_ = [("slot", u32), ("flags", u32), ("guest_phys_addr", u64), ("memory_size", u64),
                ("userspace_addr", u64)]


class KvmCpuidEntry2(C.Structure):  # 40 bytes
    _fields_ = [("function", u32), ("index", u32), ("flags", u32), ("eax", u32), ("ebx", u32),
                ("ecx", u32), ("edx", u32), ("padding", u32 * 3)]


def kvm_cpuid2(n: int) -> C.Structure:
    """A kvm_cpuid2 with room for n entries (a flexible array member in C)."""

    class KvmCpuid2(C.Structure):
        _fields_ = [("nent", u32), ("padding", u32), ("entries", KvmCpuidEntry2 * n)]

    return KvmCpuid2(nent=n)


class KvmInterrupt(C.Structure):
    _fields_ = [("irq", u32)]


class KvmTranslation(C.Structure):  # 24 bytes
    _fields_ = [("linear_address", u64), ("physical_address", u64), ("valid", u8),
                ("writeable", u8), ("usermode", u8), ("pad", u8 * 5)]


class KvmGuestDebug(C.Structure):  # 72 bytes
    _fields_ = [("control", u32), ("pad", u32), ("debugreg", u64 * 8)]


class KvmCoalescedMmioZone(C.Structure):  # 16 bytes
    _fields_ = [("addr", u64), ("size", u32), ("pio", u32)]


class KvmCoalescedMmio(C.Structure):  # one ring entry, 24 bytes
    _fields_ = [("phys_addr", u64), ("len", u32), ("pio", u32), ("data", u8 * 8)]


class KvmCoalescedMmioRing(C.Structure):
    _fields_ = [("first", u32), ("last", u32)]  # followed by the entries


class KvmStatsHeader(C.Structure):  # 24 bytes
    _fields_ = [("flags", u32), ("name_size", u32), ("num_desc", u32), ("id_offset", u32),
                ("desc_offset", u32), ("data_offset", u32)]


class KvmStatsDesc(C.Structure):  # 16 bytes + name
    _fields_ = [("flags", u32), ("exponent", s16), ("size", u16), ("offset", u32),
                ("bucket_size", u32)]


# Offsets the run loop reads with struct.unpack_from on the kvm_run page (hot path).
RUN_EXIT_REASON = KvmRun.exit_reason.offset
RUN_IMMEDIATE_EXIT = KvmRun.immediate_exit.offset
RUN_U = KvmRun.u.offset
RUN_S = KvmRun.s.offset
