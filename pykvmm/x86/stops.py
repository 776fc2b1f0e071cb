"""Why an emulator run stopped: the reason constants, all in one place, and the ``Stop`` value.

Every stop leaves the CPU state at an instruction boundary with no partial effect of the
instruction it stopped before (for REP string instructions, at the boundary between two
iterations, which is architecturally an instruction boundary too: an interrupt may arrive there).
"""

from __future__ import annotations

BUDGET = "budget"          # max_insns executed
LEFT_RANGE = "left-range"  # the next IP is outside [lo, hi)
EXTENT = "extent"          # io_window instructions passed without an IO instruction (trace mode)
UNSUPPORTED = "unsupported"  # decodable, legal, but outside the emulator's coverage
PRIVILEGED = "privileged"  # INT, IRET, far transfers, descriptor-table and control-register work
FAULT = "fault"            # would raise an exception: #DE, #GP/#SS at the segment limit, #UD,
                           # an access to unbacked memory or a write to ROM
SMC = "smc"                # the last instruction wrote into code fetched in this run
TRAP_FLAG = "trap-flag"    # TF is set (or POPF would set it): single-stepping belongs to KVM
SHADOW = "shadow"          # STI, MOV SS or POP SS: KVM runs them and keeps the interrupt shadow
IRQ_WINDOW = "irq-window"  # POPF would set IF: KVM runs it so a pending interrupt is delivered
DEADLINE = "deadline"      # deadline_ns passed
HALT = "halt"              # the next instruction is HLT
MODE = "mode"              # the CPU is not in plain real mode (see CpuState.plain)
REQUESTED = "requested"    # Emulator.request_stop() was called (by a device during IO)

ALL = (BUDGET, LEFT_RANGE, EXTENT, UNSUPPORTED, PRIVILEGED, FAULT, SMC, TRAP_FLAG, SHADOW,
       IRQ_WINDOW, DEADLINE, HALT, MODE, REQUESTED)


class Stop:
    """The result of ``Emulator.run``: ``reason`` (one of the constants above), ``insns``
    (instruction executions completed; each iteration of a REP string instruction counts as one),
    ``ios`` (executions that performed port IO or touched MMIO), and ``detail`` (a human-readable
    note, e.g. the mnemonic refused, or "")."""

    __slots__ = ("reason", "insns", "ios", "detail")

    def __init__(self, reason: str, insns: int = 0, ios: int = 0, detail: str = ""):
        self.reason = reason
        self.insns = insns
        self.ios = ios
        self.detail = detail

    def __repr__(self) -> str:
        d = f", detail={self.detail!r}" if self.detail else ""
        return f"Stop({self.reason!r}, insns={self.insns}, ios={self.ios}{d})"


class Refuse(Exception):
    """Raised inside an instruction before any side effect; caught by the run loop only."""

    done = 0  # instructions of a compiled block completed before the refused one
    ios = 0  # how many of those did IO

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail
