"""Several VMs in one process sharing one virtual device's block table (the patent's Figure 3).

``python -m pykvmm --vms N GUEST.bin`` runs N copies of the guest at once, one vCPU thread each.
Their coalescing engines share one table where the table checks content, so a block learned in one
VM is a hit in another when the bytes match: Figure 5 (entries carry a digest of the block's bytes)
and Figure 6 (the table is a set of block digests).  Figure 7's table is keyed on a VM's own
physical addresses and never re-checks content in the patent, so it stays per VM.

Each VM's serial output stays apart: on stdout every line is prefixed with ``vmN| ``; with
``--serial file:PATH`` VM N writes to ``PATH.vmN``.  Stats are given per VM and in total.

Threads: every table operation is a single dict or list operation, atomic under the GIL, so
sharing needs no lock (at worst two VMs that learn the same block at once both store it).
Signals reach the main thread, which stops every VM and kicks it out of KVM_RUN.
"""

from __future__ import annotations

import signal
import threading

from . import early_stop
from .coalesce.engine import FIG5, FIG6, FIG7, OFF, TRACE, CoalescingEngine
from .coalesce.hashing import Fig5Table, Fig6Table
from .machine.kicker import KICK_SIGNAL
from .machine.machine import (END_INTERRUPT, STATUS_SIGINT, STATUS_SIGTERM, Machine, MachineConfig,
                              RunResult)
from .machine.sinks import Sink


class PrefixSink(Sink):
    """A sink that starts every line with a prefix (several VMs sharing stdout)."""

    __slots__ = ("prefix", "_at_line_start", "_n")

    def __init__(self, inner_fd: int | None, prefix: bytes, line_buffered: bool):
        super().__init__(inner_fd, owns=False, line_buffered=line_buffered, name="stdio")
        self.prefix = prefix
        self._at_line_start = True
        self._n = 0

    @property
    def count(self) -> int:  # the buffer holds the prefixes too
        return self._n

    def __call__(self, data: bytes) -> None:
        self._n += len(data)
        if self.fd is None:
            return
        out = bytearray()
        for line in data.splitlines(keepends=True):
            if self._at_line_start:
                out += self.prefix
            out += line
            self._at_line_start = line.endswith(b"\n")
        self.buf += out
        if len(self.buf) >= 65536 or (self._line_buffered and b"\n" in data):
            self.flush()

    def byte(self, value: int) -> None:
        self(bytes((value,)))  # Sink.byte would skip the prefixing


def shared_table(policy: str, table_size: int):
    """The table VMs share under this policy, or None when each VM keeps its own."""
    if policy == FIG5:
        return Fig5Table(table_size)
    if policy == FIG6:
        return Fig6Table(table_size)
    return None  # fig7 (per-VM addresses), trace (no table), off


def serial_spec_for(spec: str, index: int) -> str:
    if spec.startswith("file:"):
        return f"{spec}.vm{index}"
    return spec


def run_vms(image: bytes, count: int, config: MachineConfig, policy: str = OFF, timeout=None,
            share: bool = True, setup=None, **engine_kw) -> list[tuple[Machine, RunResult]]:
    """Run ``count`` copies of the guest at once; returns (machine, result) per VM, machines still
    open (the caller closes them).  ``setup(index, machine)``, if given, runs for each machine
    before any VM starts (the CLI attaches per-VM IO logs there)."""
    import os
    import sys

    machines: list[Machine] = []
    results: list[RunResult | None] = [None] * count
    table = shared_table(policy, engine_kw.get("table_size", 4096)) if share else None
    try:
        for i in range(count):
            cfg = MachineConfig(**{**config.__dict__, "serial": serial_spec_for(config.serial, i),
                                   "serial2": serial_spec_for(config.serial2, i),
                                   "debugcon": serial_spec_for(config.debugcon, i),
                                   "serial_input": False})
            m = Machine(cfg)
            if config.serial == "stdio":
                fd = sys.stdout.fileno()
                m.serial.close()
                m.serial = PrefixSink(fd, f"vm{i}| ".encode(), os.isatty(fd))
                m.sinks[0] = m.serial
                m.uart.set_sink(m.serial)
            m.load_guest(image)
            if policy not in (OFF, "kvm-ring"):
                m.engine = CoalescingEngine(m, policy, vm_id=i, tables=table, **engine_kw)
            machines.append(m)
            if setup is not None:
                setup(i, m)
    except BaseException:
        for m in machines:
            m.close()
        raise

    def worker(i: int) -> None:
        results[i] = machines[i].run(timeout=timeout)

    def stop_all(signum, frame) -> None:
        status = STATUS_SIGINT if signum == signal.SIGINT else STATUS_SIGTERM
        for m in machines:
            m.request_stop(END_INTERRUPT, status, f"stopped by signal {signum}")
            k = m._kicker
            if k is not None:
                k.kick()

    main = threading.current_thread() is threading.main_thread()
    old = {}
    if main:
        old[KICK_SIGNAL] = signal.signal(KICK_SIGNAL, lambda s, f: None)
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, stop_all)
        if early_stop.received:  # a signal during start-up: stop before the guests run
            stop_all(early_stop.received[0], None)
    threads = [threading.Thread(target=worker, args=(i,), name=f"pykvmm-vcpu{i}") for i in range(count)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.1)  # a timed join lets the main thread run signal handlers
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
    return [(m, r) for m, r in zip(machines, results)]  # type: ignore[misc]


def total_stats(per_vm: list[dict]) -> dict:
    """Sums of the numeric figures across VMs (exits, io_ops, coalescing counters)."""
    total: dict = {"exits": {}, "io_ops": 0, "serial_bytes": 0, "coalesce": {}}
    for st in per_vm:
        for k, v in st["exits"].items():
            total["exits"][k] = total["exits"].get(k, 0) + v
        total["io_ops"] += st["io_ops"]["total"]
        total["serial_bytes"] += st["serial_bytes"]
        for k, v in st["coalesce"].items():
            if isinstance(v, int) and not isinstance(v, bool) and k not in ("extent", "warmup"):
                total["coalesce"][k] = total["coalesce"].get(k, 0) + v
    return total


__all__ = ["run_vms", "total_stats", "shared_table", "TRACE", "FIG7"]
