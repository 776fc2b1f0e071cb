"""The scanning unit (patent 420): look ahead ``extent`` instructions for further IO.

It decodes forward through the emulator's decode cache (capstone runs once per new instruction,
about 6 us; a cached instruction costs a dictionary lookup and a byte comparison).  Port IO is
recognised by opcode.  For memory-mapped IO it asks each instruction which addresses it would touch
*with the current registers* and whether the MMIO bus claims one: only a guess, since registers
change on the way, but the guess only decides where the block ends.  Emulation routes every access
by its real address, so a wrong guess can never make an access wrong.

The scan stops early at an instruction the emulator cannot run (emulation would stop there anyway)
and at the end of the code segment.
"""

from __future__ import annotations


class ScanResult:
    __slots__ = ("size", "ios", "scanned")

    def __init__(self, size: int, ios: int, scanned: int):
        self.size = size  # block bytes from the site through the last IO found (0: singular)
        self.ios = ios  # IO instructions found within the extent
        self.scanned = scanned  # bytes the scan read from the site


class ScanningUnit:
    def __init__(self, emulator, mmio):
        self.emu = emulator
        self.mmio = mmio

    def scan(self, s: list, cs_base: int, site_ip: int, extent: int) -> ScanResult:
        lookup = self.emu.lookup
        claims = self.mmio.claims
        ip = site_ip
        last_end = site_ip
        ios = 0
        for _ in range(extent):
            insn = lookup(cs_base, ip)
            if not insn.length or not insn.supported:
                break
            is_io = insn.is_pio
            if not is_io:
                try:
                    for addr, size in insn.accesses(s):
                        if claims(addr, size):
                            is_io = True
                            break
                except Exception:  # a guess that cannot be made is no IO
                    pass
            ip += insn.length
            if ip > 0xFFFF:
                break
            if is_io:
                last_end = ip
                ios += 1
        return ScanResult(last_end - site_ip, ios, ip - site_ip)
