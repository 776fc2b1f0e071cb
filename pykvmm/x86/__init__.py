"""The real-mode x86 emulator used for coalesced blocks (issue 4).

Public API (what the coalescing engine uses):

``CpuState``  (pykvmm.x86.state)
    Flat register state: ``cpu.s`` is a list [EAX ECX EDX EBX ESP EBP ESI EDI, EIP, EFLAGS,
    selectors ES CS SS DS FS GS, bases ES CS SS DS FS GS]; named access ``cpu.ax``, ``cpu.eip``,
    ``cpu.ds``, ``cpu.ds_base`` ...  ``CpuState(eax=..., ip=..., cs=..., ...)`` for tests;
    ``cpu.load(regs, sregs)`` from kvm_regs/kvm_sregs-like objects (duck-typed);
    ``cpu.store(regs)`` writes GPRs, RIP, RFLAGS back (upper 32 bits kept);
    ``cpu.store_segments(sregs)`` writes back segment registers changed by MOV/POP/LDS/LES;
    ``cpu.plain`` is False when the loaded sregs were not plain real mode.
``plain_real_mode(sregs) -> bool``
    CR0.PE=0 and every segment base == selector*16 with limit 0xFFFF.  Anything else: refuse.
``Emulator(mem, pio, mmio)``
    ``run(cpu, *, max_insns, lo=0, hi=0x10000, io_window=None, deadline_ns=None) -> Stop``
        Emulates from CS:IP.  Stops *before* an instruction whose IP is outside [lo, hi), after
        ``max_insns`` executions, after ``io_window`` executions without IO (trace mode), at
        ``deadline_ns`` (time.monotonic_ns), or before anything it refuses; right *after* a
        write into code fetched in this run ("smc").  ``cpu`` is left at an instruction
        boundary with no partial effect.  Each iteration of a REP string instruction is one
        execution (it is an architectural boundary: interrupts are taken between iterations).
    ``decode(cpu_or_cs_base, ip) -> Insn`` through the same validated cache.
``Stop``  (pykvmm.x86.stops): ``.reason`` (a constant of pykvmm.x86.stops: BUDGET "budget",
    LEFT_RANGE "left-range", EXTENT "extent", UNSUPPORTED "unsupported", PRIVILEGED
    "privileged", FAULT "fault", SMC "smc", TRAP_FLAG "trap-flag", SHADOW "shadow", IRQ_WINDOW
    "irq-window", DEADLINE "deadline", HALT "halt", MODE "mode"), ``.insns`` (executions
    completed), ``.ios`` (executions that did port IO or touched MMIO), ``.detail`` (text).
``Insn``  (pykvmm.x86.decoder): ``.length``, ``.bytes``, ``.ip``, ``.mnemonic``, ``.is_pio``
    (IN/OUT/INS/OUTS by opcode), ``.is_string``, ``.supported`` and, when not, ``.reason`` and
    ``.detail``; ``.accesses(cpu.s) -> [(linear address, size), ...]``: the memory accesses the
    instruction would make with the current registers (a guess for the scanning unit).

Memory routing: every access goes by physical address: RAM directly, ROM read-only, an address
the MMIO bus claims to the MMIO bus (an IO operation, counted in ``ios``), anything else
refused before the instruction ("fault").  Real mode has no A20 wrap under KVM: linear =
segment*16 + offset, up to 0x10FFEF.

Layering: this package imports only pykvmm.errors and pykvmm.machine.{memory,bus,layout}.
"""

from .decoder import Insn, MemOperand
from .emulator import Emulator
from .state import CpuState, plain_real_mode
from .stops import Stop
from . import stops

__all__ = ["CpuState", "Emulator", "Insn", "MemOperand", "Stop", "plain_real_mode", "stops"]
