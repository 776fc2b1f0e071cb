"""The silicon oracle: SingleStepTests/80286 vectors recorded from a real 80C286.

Every vector whose form the emulator covers is run from its initial state until the HLT that
ends it; registers, flags (masked as the oracle's README says) and memory must match.  Vectors
that faulted on the real CPU (``exception``) must be refused before the instruction runs.
A per-form report (ran / matched / refused) is printed; the test asserts 100% of the vectors
run match and that covered vectors make up at least 85% of the vectors outside the masked list.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from pykvmm.machine.bus import MmioBus, PortBus
from pykvmm.x86 import stops
from pykvmm.x86.emulator import Emulator
from pykvmm.x86.state import CpuState

from conftest import FlatMemory

ORACLE_NAME = Path("shared") / "oracles" / "singlestep-80286"


def find_oracle() -> Path | None:
    env = os.environ.get("PYKVMM_SINGLESTEP_80286")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        for cand in (parent / ORACLE_NAME, parent.parent / ORACLE_NAME):
            if (cand / "metadata.json").is_file():
                return cand
    return None


# Forms the oracle README masks: BCD adjusts where a 286 and a modern CPU differ (DAA AAA AAS),
# BOUND, WAIT, x87 escapes.  LOCK-prefixed vectors are masked per vector (see is_locked).
MASKED_FORMS = {"27", "37", "3F", "62", "9B", *(f"D{d}" for d in "89ABCDEF")}
# AAM/AAD: all flags masked (README): KVM's emulator takes SF ZF PF from all of AX, the 286
# (and the SDM) from AL; the emulator follows KVM, checked by the KVM differential test.
FLAGS_MASKED_FORMS = {"D4", "D5"}
PREFIXES = {0x26, 0x2E, 0x36, 0x3E, 0xF0, 0xF2, 0xF3}
# IOPL and NT (bits 12-15) cannot be set in 286 real mode; bit 1 always reads 1.
FLAGS_COMPARE = 0x0FFF


class FakePorts(PortBus):
    """Port reads return all ones, as on the rig (README); writes are swallowed."""


def is_locked(code: list[int]) -> bool:
    for b in code:
        if b == 0xF0:
            return True
        if b not in PREFIXES:
            return False
    return False


def form_of(fname: str) -> str:
    return fname[: -len(".json.gz")]


def exception_286_only(vec: dict) -> str:
    """Faults a 286 raises where a 386 or later (and so KVM) does not; the emulator must match
    the modern CPU, so these vectors are skipped (and counted) rather than run."""
    code = vec["bytes"]
    length = len(code) - 1  # the vector ends with HLT
    if length > 10:
        return "instruction longer than the 286's 10-byte limit (#GP); the limit is 15 since the 386"
    i = 0
    while code[i] in PREFIXES:
        i += 1
    if code[i] in (0x8C, 0x8E) and (code[i + 1] >> 3) & 7 in (4, 5):
        return "FS/GS as a MOV Sreg operand is #UD on a 286 and valid since the 386"
    return ""


def run_vector(emu: Emulator, mem: FlatMemory, vec: dict) -> tuple[str, str]:
    """Returns (outcome, note): outcome is "match", "mismatch", "refused", "refused-exc" or
    "ran-exc" (an exception vector that the emulator executed: always a failure)."""
    init = vec["initial"]
    r = init["regs"]
    for addr, val in init["ram"]:
        mem.ram[addr] = val
    cpu = CpuState(eax=r["ax"], ecx=r["cx"], edx=r["dx"], ebx=r["bx"], esp=r["sp"], ebp=r["bp"],
                   esi=r["si"], edi=r["di"], ip=r["ip"], flags=(r["flags"] & FLAGS_COMPARE) | 2,
                   cs=r["cs"], ss=r["ss"], ds=r["ds"], es=r["es"])
    before = cpu.copy()
    stop = emu.run(cpu, max_insns=1 << 20)
    try:
        if "exception" in vec:
            if stop.insns == 0 and stop.reason != stops.HALT:
                return ("refused-exc", stop.reason) if cpu == before else ("ran-exc", "state changed")
            return "ran-exc", f"{stop}"
        if stop.insns == 0:
            return "refused", f"{stop.reason}: {stop.detail}"
        if stop.reason != stops.HALT:
            return "mismatch", f"stopped with {stop}"
        fin = vec["final"]["regs"]
        want = dict(r, **fin)
        mask = FLAGS_COMPARE & vec["_flags_mask"]
        problems = []
        for name in ("ax", "bx", "cx", "dx", "sp", "bp", "si", "di", "cs", "ss", "ds", "es"):
            got = getattr(cpu, name)
            if got != want[name]:
                problems.append(f"{name}={got:04x} want {want[name]:04x}")
        if (cpu.ip + 1) & 0xFFFF != want["ip"]:  # the rig's final IP is one past the HLT
            problems.append(f"ip={cpu.ip + 1:04x} want {want['ip']:04x}")
        if (cpu.flags ^ want["flags"]) & mask:
            problems.append(f"flags={cpu.flags:04x} want {want['flags']:04x} mask {mask:04x}")
        for addr, val in vec["final"]["ram"]:
            if mem.ram[addr] != val:
                problems.append(f"[{addr:05x}]={mem.ram[addr]:02x} want {val:02x}")
        return ("mismatch", "; ".join(problems)) if problems else ("match", "")
    finally:
        for addr, _ in init["ram"]:
            mem.ram[addr] = 0
        for addr, _ in vec["final"]["ram"]:
            mem.ram[addr] = 0


def test_silicon_vectors(capsys):
    root = find_oracle()
    if root is None:
        pytest.skip("SingleStepTests 80286 vectors not found (set PYKVMM_SINGLESTEP_80286)")
    meta = json.loads((root / "metadata.json").read_text())["opcodes"]
    mem = FlatMemory()
    emu = Emulator(mem, FakePorts(), MmioBus())
    report = []
    totals = {"vectors": 0, "unmasked": 0, "ran": 0, "match": 0, "refused": 0, "refused-exc": 0}
    failures = []
    for path in sorted((root / "v1_real_mode").glob("*.json.gz")):
        form = form_of(path.name)
        vecs = json.loads(gzip.open(path).read())
        totals["vectors"] += len(vecs)
        if form in MASKED_FORMS:
            continue
        op, _, reg = form.partition(".")
        info = meta.get(op, {})
        if reg:
            info = info.get("reg", {}).get(reg, {})
        fmask = 0 if form in FLAGS_MASKED_FORMS else info.get("flags-mask", 0xFFFF)
        counts = {"ran": 0, "match": 0, "refused": 0, "refused-exc": 0, "locked": 0,
                  "skipped-286": 0}
        notes = set()
        for vec in vecs:
            if is_locked(vec["bytes"]):
                counts["locked"] += 1
                continue
            vec["_flags_mask"] = fmask
            if "exception" in vec and exception_286_only(vec):
                counts["skipped-286"] += 1
                continue
            outcome, note = run_vector(emu, mem, vec)
            if outcome in ("match", "mismatch", "ran-exc"):
                counts["ran"] += 1
            if outcome == "match":
                counts["match"] += 1
            elif outcome in ("refused", "refused-exc"):
                counts[outcome] += 1
                if outcome == "refused":
                    notes.add(note)
            else:
                failures.append(f"{form} {vec['name']} {bytes(vec['bytes']).hex()}: {outcome}: {note}")
        unmasked = len(vecs) - counts["locked"] - counts["skipped-286"]
        totals["unmasked"] += unmasked
        for k in ("ran", "match", "refused", "refused-exc"):
            totals[k] += counts[k]
        report.append(f"{form:6} ran {counts['ran']:3} matched {counts['match']:3} refused "
                      f"{counts['refused']:3} refused(exception) {counts['refused-exc']:3}"
                      + (f"  [{'; '.join(sorted(notes))[:70]}]" if notes else ""))
    handled = totals["ran"] + totals["refused-exc"]
    coverage = handled / totals["unmasked"]
    summary = (f"silicon vectors: {totals['vectors']} total, {totals['unmasked']} outside the masked "
               f"list; ran {totals['ran']}, matched {totals['match']}, refused {totals['refused']}, "
               f"refused as the CPU faulted {totals['refused-exc']}; coverage "
               f"{100 * coverage:.1f}% (ran + correctly refused exceptions)")
    with capsys.disabled():
        print("\n" + "\n".join(report) + "\n" + summary)
    assert not failures, f"{len(failures)} vectors differ from silicon:\n" + "\n".join(failures[:40])
    assert totals["match"] == totals["ran"]
    assert coverage >= 0.85, summary
