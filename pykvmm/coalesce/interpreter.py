"""The instruction interpreter unit (patent 410): is this exit an IO access, and of which kind?

Port IN/OUT (and string INS/OUTS, which arrive as port-IO exits with a count), and memory-mapped
IO (KVM_EXIT_MMIO) are IO accesses; every other exit is not coalesced.
"""

from __future__ import annotations

from ..kvm import exits as X

PIO_OUT = "pio-out"
PIO_IN = "pio-in"
MMIO_WRITE = "mmio-write"
MMIO_READ = "mmio-read"
KINDS = (PIO_OUT, PIO_IN, MMIO_WRITE, MMIO_READ)

_KIND_BY_TYPE = {X.IoOut: PIO_OUT, X.IoIn: PIO_IN, X.MmioWrite: MMIO_WRITE, X.MmioRead: MMIO_READ}


class InstructionInterpreter:
    """Classifies an exit value; ``None`` means "not an IO access"."""

    @staticmethod
    def classify(exit_value) -> str | None:
        return _KIND_BY_TYPE.get(type(exit_value))
