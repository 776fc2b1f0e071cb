"""The real-mode x86 emulator used for coalesced blocks (issue 4).

Public API (what the coalescing engine uses):

``CpuState``  (pykvmm.x86.state)
    32-bit GPRs, EIP, EFLAGS, selectors and bases, with named access: ``cpu.eax``, ``cpu.ax``,
    ``cpu.al``, ``cpu.ip``, ``cpu.flags``, ``cpu.ds``, ``cpu.ds_base`` ... (reads and writes).
    Internally one flat list ``cpu.s`` (layout in state.py: GPRs kept as 16-bit halves, which
    CPython computes on much faster).  ``CpuState(eax=..., ip=..., cs=..., ...)`` for tests;
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
    ``request_stop()``: from a device callback during IO (debug exit, an interrupt became
    deliverable): the run ends right after the current instruction, reason "requested".
    ``use_blocks`` (default True): False runs one instruction per dispatch (reference mode).
    A run costs about 2.5 us of fixed overhead plus ~150 ns per instruction on this host
    (scripts/bench_emulator.py); code validated in the previous run is reused after a few
    slice compares when its bytes are unchanged.
``Stop``  (pykvmm.x86.stops): ``.reason`` (a constant of pykvmm.x86.stops: BUDGET "budget",
    LEFT_RANGE "left-range", EXTENT "extent", UNSUPPORTED "unsupported", PRIVILEGED
    "privileged", FAULT "fault", SMC "smc", TRAP_FLAG "trap-flag", SHADOW "shadow", IRQ_WINDOW
    "irq-window", DEADLINE "deadline", HALT "halt", MODE "mode", REQUESTED "requested"),
    ``.insns`` (executions
    completed), ``.ios`` (executions that did port IO or touched MMIO; a REP INS/OUTS
    iteration is one), ``.detail`` (text).  "deadline" is checked every 256 executions.
``Insn``  (pykvmm.x86.decoder): ``.length``, ``.bytes``, ``.ip``, ``.mnemonic``, ``.is_pio``
    (IN/OUT/INS/OUTS by opcode), ``.is_string``, ``.supported`` and, when not, ``.reason`` and
    ``.detail``; ``.accesses(cpu.s) -> [(linear address, size), ...]``: the memory accesses the
    instruction would make with the current registers (a guess for the scanning unit).

Memory routing: every access goes by physical address: RAM directly, ROM read-only, an address
the MMIO bus claims to the MMIO bus (an IO operation, counted in ``ios``), anything else
refused before the instruction ("fault").  Real mode has no A20 wrap under KVM: linear =
segment*16 + offset, up to 0x10FFEF.

Layering: this package imports only pykvmm.errors and pykvmm.machine.{memory,bus,layout}.

How it works: decoder.py (prefixes, ModRM, immediates; capstone cross-checks length and
validity), codegen.py (each instruction becomes Python source specialised on its operands; a
basic block -- straight-line code up to a jump, a memory write or a string instruction, with
conditional jumps as side exits and port IO inside (at most 6 instructions after the last IO;
blocks are used only when io_window is None or >= 6) -- is compiled into one function with
dead status-flag elimination and JZ/JNZ/JB/JAE fused with the flag producer), emulator.py (cache validated against guest bytes, memory routing,
the run loop), alu.py (flag tables, shifts, multiply/divide, bit scans).

Host facts the emulator depends on (each checked by a test, so another host fails loudly):
  - Undefined flags follow this host's AMD EPYC, because KVM here executes real-mode code in
    its in-kernel emulator, which computes flags on the host CPU.  The rules are listed in
    alu.py; tests/unit/x86/test_host_flags.py compares 192 instruction forms with the host CPU.
  - PUSH Sreg with a 32-bit operand writes 2 bytes and moves SP by 4 (KVM's em_push_sreg).
  - KVM reports RIP past a HLT (tests/kvm/test_x86_differential.py).
  - Real mode has no A20 wrap under KVM: linear = segment*16 + offset, up to 0x10FFEF.
Differences from the 80286 that the silicon-vector test allows for: instructions up to 15
bytes (the 286 faults above 10) and FS/GS exist (MOV with them is #UD on a 286).
"""

from .decoder import Insn, MemOperand
from .emulator import Emulator
from .state import CpuState, plain_real_mode
from .stops import Stop
from . import stops

__all__ = ["CpuState", "Emulator", "Insn", "MemOperand", "Stop", "plain_real_mode", "stops"]
