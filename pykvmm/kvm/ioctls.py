"""KVM ioctl numbers, capabilities and exit reasons: the one place they are defined.

Values from include/uapi/linux/kvm.h (and asm-generic/ioctl.h for the encoding).
"""

# asm-generic/ioctl.h: dir(2) | size(14) | type(8) | nr(8)
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
KVMIO = 0xAE


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _io(nr: int) -> int:
    return _ioc(_IOC_NONE, nr, 0)


def _iow(nr: int, size: int) -> int:
    return _ioc(_IOC_WRITE, nr, size)


def _ior(nr: int, size: int) -> int:
    return _ioc(_IOC_READ, nr, size)


def _iowr(nr: int, size: int) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, nr, size)


# System ioctls (on /dev/kvm)
KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_CHECK_EXTENSION = _io(0x03)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_GET_SUPPORTED_CPUID = _iowr(0x05, 8)  # struct kvm_cpuid2 header
# VM ioctls
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, 32)
KVM_SET_TSS_ADDR = _io(0x47)
KVM_SET_IDENTITY_MAP_ADDR = _iow(0x48, 8)
KVM_REGISTER_COALESCED_MMIO = _iow(0x67, 16)
KVM_UNREGISTER_COALESCED_MMIO = _iow(0x68, 16)
# vCPU ioctls
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, 144)
KVM_SET_REGS = _iow(0x82, 144)
KVM_GET_SREGS = _ior(0x83, 312)
KVM_SET_SREGS = _iow(0x84, 312)
KVM_TRANSLATE = _iowr(0x85, 24)
KVM_INTERRUPT = _iow(0x86, 4)
KVM_SET_SIGNAL_MASK = _iow(0x8B, 4)
KVM_SET_CPUID2 = _iow(0x90, 8)
KVM_SET_GUEST_DEBUG = _iow(0x9B, 72)
KVM_GET_VCPU_EVENTS = _ior(0x9F, 64)
KVM_SET_VCPU_EVENTS = _iow(0xA0, 64)
KVM_GET_STATS_FD = _io(0xCE)

KVM_API_VERSION = 12

# Capabilities (KVM_CHECK_EXTENSION)
KVM_CAP_USER_MEMORY = 3
KVM_CAP_SET_TSS_ADDR = 4
KVM_CAP_COALESCED_MMIO = 15
KVM_CAP_SET_GUEST_DEBUG = 23
KVM_CAP_READONLY_MEM = 81
KVM_CAP_IMMEDIATE_EXIT = 136
KVM_CAP_SYNC_REGS = 74
KVM_CAP_COALESCED_PIO = 162
KVM_CAP_BINARY_STATS_FD = 203

# Memory region flags
KVM_MEM_LOG_DIRTY_PAGES = 1 << 0
KVM_MEM_READONLY = 1 << 1

# Sync-regs selection bits (arch/x86/include/uapi/asm/kvm.h)
KVM_SYNC_X86_REGS = 1 << 0
KVM_SYNC_X86_SREGS = 1 << 1
KVM_SYNC_X86_EVENTS = 1 << 2

# Guest debug control
KVM_GUESTDBG_ENABLE = 0x00000001
KVM_GUESTDBG_SINGLESTEP = 0x00000002

# kvm_run.io.direction
KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

# Exit reasons
KVM_EXIT_UNKNOWN = 0
KVM_EXIT_EXCEPTION = 1
KVM_EXIT_IO = 2
KVM_EXIT_HYPERCALL = 3
KVM_EXIT_DEBUG = 4
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_IRQ_WINDOW_OPEN = 7
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_SYSTEM_EVENT = 24

EXIT_REASON_NAMES = {
    KVM_EXIT_UNKNOWN: "unknown", KVM_EXIT_EXCEPTION: "exception", KVM_EXIT_IO: "io",
    KVM_EXIT_HYPERCALL: "hypercall", KVM_EXIT_DEBUG: "debug", KVM_EXIT_HLT: "hlt",
    KVM_EXIT_MMIO: "mmio", KVM_EXIT_IRQ_WINDOW_OPEN: "irq_window", KVM_EXIT_SHUTDOWN: "shutdown",
    KVM_EXIT_FAIL_ENTRY: "fail_entry", KVM_EXIT_INTR: "intr", KVM_EXIT_INTERNAL_ERROR: "internal_error",
    KVM_EXIT_SYSTEM_EVENT: "system_event",
}

# KVM_EXIT_INTERNAL_ERROR suberrors
KVM_INTERNAL_ERROR_EMULATION = 1
KVM_INTERNAL_ERROR_SIMUL_EX = 2
KVM_INTERNAL_ERROR_DELIVERY_EV = 3
KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4
INTERNAL_ERROR_NAMES = {
    KVM_INTERNAL_ERROR_EMULATION: "emulation failure",
    KVM_INTERNAL_ERROR_SIMUL_EX: "exception while delivering an exception",
    KVM_INTERNAL_ERROR_DELIVERY_EV: "event delivery failed",
    KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: "unexpected exit reason",
}
# Flag in emulation_failure.flags: insn_size/insn_bytes are valid.
KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES = 1
