"""Run a guest in-process under a coalescing policy and collect what must not depend on it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pykvmm.cli import read_firmware
from pykvmm.coalesce.engine import OFF, CoalescingEngine
from pykvmm.machine.machine import Machine, MachineConfig


def observe(guest: Path, policy: str = OFF, extent: int = 10, timeout: float = 60, **engine_kw) -> dict:
    """Serial output, exit status, io_ops per port and final registers of one run."""
    fd, out = tempfile.mkstemp(prefix="pykvmm-serial-")
    os.close(fd)
    fd2, out2 = tempfile.mkstemp(prefix="pykvmm-serial2-")
    os.close(fd2)
    firmware, kind = read_firmware(None)
    try:
        config = MachineConfig(serial=f"file:{out}", serial2=f"file:{out2}", firmware=firmware,
                               firmware_kind=kind, serial_input=False)
        with Machine(config) as m:
            m.load_guest(guest.read_bytes())
            if policy != OFF:
                m.engine = CoalescingEngine(m, policy, extent=extent, **engine_kw)
            r = m.run(timeout=timeout)
            stats = m.stats(r)
        return {
            "end": r.end, "status": r.exit_status, "serial": Path(out).read_bytes(),
            "serial2": Path(out2).read_bytes(), "io_ops": stats["io_ops"]["by_port"],
            "mmio_ops": stats["io_ops"]["mmio_by_addr"], "final_regs": stats["final_regs"],
            "exits": stats["exits"], "coalesce": stats["coalesce"], "detail": r.detail,
        }
    finally:
        os.unlink(out)
        os.unlink(out2)
