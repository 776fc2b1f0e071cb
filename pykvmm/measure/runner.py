"""One measured run: a guest in-process under one policy, in a fresh Machine.

The guest runs as ``python -m pykvmm GUEST --serial file:...`` would run it (pykvmm's firmware
first), but in this process, so a sweep pays no interpreter start-up per run.  Wall time is the
Machine's run loop (``wall_s``: from the first KVM_RUN to the stop, building the VM excluded);
CPU time is the whole process's user + system time over the same span, from psutil, and so
includes the kicker thread.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import psutil

from ..cli import read_firmware
from ..coalesce import engine as E
from ..machine.coalesced_ring import CoalescedRing
from ..machine.machine import Machine, MachineConfig
from .options import AUTO, KVM_RING, auto_extent

# KVM binary statistics kept per run: the exit counters and KVM's own emulation count.
KVM_STATS_KEPT = ("exits", "io_exits", "mmio_exits", "halt_exits", "signal_exits",
                  "irq_window_exits", "request_irq_exits", "irq_exits", "insn_emulation")
# Engine statistics kept per run (the rest stays in --stats-json).
ENGINE_KEPT = ("scans", "blocks_emulated", "instructions_emulated", "io_emulated", "singular",
               "table_hits", "table_misses", "hash_mismatches", "invalidations", "completions",
               "warmup", "warming", "demoted")
RING_KEPT = ("drains", "ring_writes", "max_batch")


CPU_HELP = "pin to this CPU (default: the last one this process may use), or none"


def pin_cpu(spec: str) -> str:
    """Pin this process (and the processes it starts) to one CPU: ``"last"`` (the last one it
    may use), a number, or ``"none"`` (left alone).  Returns what was chosen, for the report.

    Unpinned on the 2-CPU development host, a guest's KVM_RUN time moved between 12.8 and
    17.6 ms from run to run, against 12.2 ms pinned, for every policy alike: the scheduler
    moving the vCPU thread costs more than the differences measured."""
    if spec == "none":
        return spec
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[-1] if spec == "last" else int(spec)
    os.sched_setaffinity(0, {cpu})
    return str(cpu)


REALTIME_HELP = ("run at this SCHED_FIFO priority (1-98; the runs it starts inherit it), or 0: "
                 "as started.  Needs root or RLIMIT_RTPRIO")


def set_realtime(prio: int) -> None:
    """Run this process (and the processes it starts) under SCHED_FIFO at ``prio``; 0 leaves it.

    Pinned to one CPU under the normal policy, a cmos_pairs run of 15-17 ms here still landed
    anywhere between 16 and 27 ms: other tasks preempt it.  Under SCHED_FIFO 50, eight runs of
    each policy lay within 15.0-15.8 ms (one outlier at 20 ms), and fig7's cost over off came
    out at its engine time (+2.2 %, engine 2.5 %).  pykvmm's kicker outranks the vCPU thread
    under a real-time policy (machine/kicker.py), so timeouts and deadlines still land.  At most
    98, leaving the kicker a priority above.  Raises SystemExit with a one-line message when the
    priority is out of range or not permitted."""
    if prio == 0:
        return
    if not 1 <= prio <= 98:
        raise SystemExit(f"--realtime {prio}: give a priority from 1 to 98, or 0 for none")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio))
    except OSError as e:
        raise SystemExit(f"--realtime {prio}: cannot use SCHED_FIFO ({e.strerror}): run as root, "
                         "raise RLIMIT_RTPRIO, or give --realtime 0")


def run_one(image: bytes, policy: str, extent, timeout: float = 60.0,
            warmup: int | str = E.COMMAND_LINE_WARMUP) -> dict:
    """Run ``image`` once; the record the sweep stores (see README, "Exit counts")."""
    fd, out = tempfile.mkstemp(prefix="pykvmm-measure-")
    os.close(fd)
    fd2, out2 = tempfile.mkstemp(prefix="pykvmm-measure2-")
    os.close(fd2)
    firmware, kind = read_firmware(None)
    proc = psutil.Process()
    try:
        config = MachineConfig(serial=f"file:{out}", serial2=f"file:{out2}", firmware=firmware,
                               firmware_kind=kind, serial_input=False)
        with Machine(config) as m:
            m.load_guest(image)
            if policy == KVM_RING:
                m.ring = CoalescedRing(m)
            elif policy != E.OFF:
                m.engine = E.CoalescingEngine(m, policy, extent=auto_extent() if extent == AUTO
                                              else extent, warmup=warmup)
            c0 = proc.cpu_times()
            t0 = time.perf_counter()
            r = m.run(timeout=timeout)
            t1 = time.perf_counter()
            c1 = proc.cpu_times()
            st = m.stats(r)
            co = m.ring.stats() if m.ring is not None else st["coalesce"]
        digest = hashlib.sha256()
        for path in (out, out2):
            digest.update(Path(path).read_bytes())
    finally:
        os.unlink(out)
        os.unlink(out2)
    ks = st.get("kvm_stats") or {}
    exits = {k: v for k, v in st["exits"].items() if v or k in ("total", "io", "mmio")}
    return {
        "end": r.end,
        "exit_status": r.exit_status,
        "wall_s": st["wall_s"],
        "run_s": round(t1 - t0, 6),
        "cpu_s": round((c1.user + c1.system) - (c0.user + c0.system), 6),
        "exits": exits,
        "kvm_stats": {k: ks[k] for k in KVM_STATS_KEPT if k in ks},
        "io_ops": st["io_ops"]["total"],
        "io_ops_by_port": st["io_ops"]["by_port"],
        "mmio_ops_by_addr": st["io_ops"]["mmio_by_addr"],
        "printed_bytes": st["serial_bytes"] + st["serial2_bytes"] + st["debugcon_bytes"],
        "output_sha256": digest.hexdigest()[:16],
        "coalesce": {k: co[k] for k in ENGINE_KEPT + RING_KEPT if k in co},
    }
