"""The short fault report: what ended the run, CS:IP, the bytes there disassembled, registers."""

from __future__ import annotations

_GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp")


def disassemble(code: bytes, ip: int, mode32: bool = False, limit: int = 3) -> list[str]:
    """Up to ``limit`` instructions of ``code`` at ``ip`` (capstone, 16-bit unless mode32)."""
    try:
        import capstone
    except ImportError:  # a report must never fail
        return [code.hex(" ")]
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32 if mode32 else capstone.CS_MODE_16)
    out = []
    for insn in md.disasm(code, ip):
        out.append(f"{insn.address:04x}: {insn.bytes.hex(' '):<20} {insn.mnemonic} {insn.op_str}".rstrip())
        if len(out) >= limit:
            break
    if not out:
        out.append(f"{ip:04x}: {code[:8].hex(' ')}  (cannot decode)")
    return out


def fault_report(reason: str, regs: dict, code: bytes | None) -> str:
    cs = regs.get("cs", 0)
    ip = regs.get("rip", 0)
    lines = [f"pykvmm: guest fault: {reason} at {cs:04x}:{ip:04x}"]
    if code:
        lines += ["  " + s for s in disassemble(code, ip, mode32=bool(regs.get("cr0", 0) & 1))]
    lines.append("  " + " ".join(f"{n}={regs.get(n, 0):08x}" for n in _GPRS))
    lines.append(f"  rip={ip:08x} rflags={regs.get('rflags', 0):08x} "
                 + " ".join(f"{s}={regs.get(s, 0):04x}" for s in ("cs", "ds", "es", "ss", "fs", "gs")))
    return "\n".join(lines)
