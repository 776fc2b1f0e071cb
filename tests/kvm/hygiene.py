"""Many VMs in one process (issue 8, section 6): shared by test_hygiene.py and scripts/hygiene.py.

``sequential(n)`` builds, runs and closes n machines one after another and samples the process's
open file descriptors, resident memory and memory mappings; ``parallel(k)`` runs k machines at
once in threads, each printing its own text, and reports what each one saw.
"""

from __future__ import annotations

import gc
import os
import threading

import psutil

from pykvmm.cli import read_firmware
from pykvmm.coalesce import engine as E
from pykvmm.machine.machine import Machine, MachineConfig

from .helpers import assemble

MODES = ("off", "fig5", "trace")
PARALLEL_MODES = ("fig5", "fig7", "fig6", "trace")  # three with block tables of their own


def _printer(letter: str, count: int) -> bytes:
    """Print ``letter`` ``count`` times through a polled COM1, keep a marker in RAM, exit 0."""
    return assemble(f"""
        mov dx, 0x3f8
        mov cx, {count}
    again:
        mov dx, 0x3fd
    poll:
        in al, dx
        test al, 0x20
        jz poll
        mov dx, 0x3f8
        mov al, '{letter}'
        out dx, al
        inc word [0x600]
        loop again
        mov al, 0
        out 0xf4, al
    """)


def n_maps() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def sample() -> dict:
    gc.collect()
    p = psutil.Process()
    return {"fds": p.num_fds(), "rss": p.memory_info().rss, "maps": n_maps(), "threads": p.num_threads()}


def run_one(code: bytes, mode: str, out: str | None = None, firmware=None) -> tuple:
    fw, kind = firmware or (None, "builtin")
    config = MachineConfig(serial=f"file:{out}" if out else "null", serial_input=False,
                           firmware=fw, firmware_kind=kind)
    with Machine(config) as m:
        m.load_guest(code)
        if mode != E.OFF:
            m.engine = E.CoalescingEngine(m, mode)
        r = m.run(timeout=20)
        marker = int.from_bytes(m.mem.read(0x600, 2), "little")
        return r.end, r.exit_status, m.serial.count, marker, m.pio.io_ops.get(0x3F8, 0), m.engine


def sequential(n: int, every: int = 50, firmware: bool = True, progress=None) -> list[dict]:
    """Run n VMs one after another; a sample after the first 10 and then every ``every``."""
    code = _printer("s", 20)
    fw = read_firmware(None) if firmware else None
    samples = []
    for i in range(n):
        end, status, *_ = run_one(code, MODES[i % len(MODES)], firmware=fw)
        assert (end, status) == ("debug-exit", 0), (i, end, status)
        if i + 1 == 10 or (i + 1) % every == 0 or i + 1 == n:
            s = sample()
            s["vms"] = i + 1
            samples.append(s)
            if progress:
                progress(s)
    return samples


def parallel(k: int, count: int = 3000, tmpdir: str = "/tmp") -> list[dict]:
    """k VMs at once, VM i printing chr(ord('A') + i) ``count`` times; what each one saw."""
    results: list[dict | None] = [None] * k
    errors: list[BaseException] = []
    barrier = threading.Barrier(k)

    def go(i: int) -> None:
        try:
            letter = chr(ord("A") + i)
            out = os.path.join(tmpdir, f"vm{i}.txt")
            code = _printer(letter, count)
            barrier.wait()
            end, status, nbytes, marker, com1, engine = run_one(code, PARALLEL_MODES[i % len(PARALLEL_MODES)], out)
            with open(out, "rb") as f:
                data = f.read()
            results[i] = {"letter": letter, "end": end, "status": status, "serial": data,
                          "serial_bytes": nbytes, "marker": marker, "com1_ops": com1,
                          "table": None if engine is None else engine.table}
        except BaseException as e:  # reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=go, args=(i,), name=f"vm{i}") for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]
