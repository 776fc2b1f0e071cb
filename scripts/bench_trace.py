#!/usr/bin/env python3
"""Issue 6's uart_spin figures: IO exits per printed byte and wall time per printed byte.

    python scripts/bench_trace.py [--rounds 5] [--policies off,trace,trace:10,fig5] [--fresh]
                                  [--cpu N|none]

Each round runs guests/uart_spin.bin once per policy (interleaved, so host noise hits them
alike), in-process or, with --fresh, each run in a new Python process (as a user's run: only the
on-disk code cache is warm), pykvmm's firmware first, serial output to a temporary file, pinned
to one CPU unless --cpu none (see bench_coalesce.py).  A policy is
``NAME``, with the command line's defaults (extent 10, but the calibrated one of --extent auto
for trace; warm-up auto), or ``NAME:EXTENT`` (``auto``: the calibrated extent).

Wall time per byte excludes start-up, as the issue asks: it is the time from the guest's first
transmitted byte to the end of the run, divided by the bytes after the first.  The first byte is
timed by a one-shot hook on both of the UART's output paths (a trapped THR write and the
emulator's THR accessor): it records the clock once, then puts the real output back, so the hot
path is not slowed.  Medians over the rounds; the load average is
printed because this host's wall times move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pykvmm.cli import read_firmware  # noqa: E402
from pykvmm.coalesce.engine import (COMMAND_LINE_WARMUP, CoalescingEngine,  # noqa: E402
                                    policy_spec)
from pykvmm.machine.machine import Machine, MachineConfig  # noqa: E402
from pykvmm.measure.runner import CPU_HELP, REALTIME_HELP, pin_cpu, set_realtime  # noqa: E402


def run_once(guest: bytes, policy: str) -> dict:
    name, ext = policy_spec(policy)
    fd, out = tempfile.mkstemp()
    os.close(fd)
    fw, kind = read_firmware(None)
    try:
        with Machine(MachineConfig(serial=f"file:{out}", firmware=fw, firmware_kind=kind,
                                   serial_input=False)) as m:
            m.load_guest(guest)
            if name != "off":
                m.engine = CoalescingEngine(m, name, extent=ext, warmup=COMMAND_LINE_WARMUP)
            uart = m.uart
            first = []

            def first_byte(value: int) -> None:
                # The first transmitted byte, on whichever path it takes: a trapped THR write
                # calls the UART's _put, an emulated one its THR accessor's bound append
                # (Uart16550.set_sink binds both); set_sink then puts the real output back.
                first.append(time.perf_counter())
                uart.set_sink(uart._sink)
                uart._put(value)

            uart._put = first_byte
            uart._thr_bind(first_byte, b"", None, 1)
            t0 = time.perf_counter()
            r = m.run(timeout=300)
            t1 = time.perf_counter()
            st = m.stats(r)
        st["serial_len"] = Path(out).stat().st_size
        st["wall_s"] = t1 - t0
        st["steady_s"] = t1 - first[0] if first else float("nan")
        return st
    finally:
        os.unlink(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--policies", default="off,trace,trace:10")
    ap.add_argument("--guest", default=str(ROOT / "guests" / "uart_spin.bin"))
    ap.add_argument("--fresh", action="store_true",
                    help="each run in a new Python process (what a user's run costs)")
    ap.add_argument("--cpu", default="last", metavar="N|none",
                    help=CPU_HELP)
    ap.add_argument("--realtime", type=int, default=0, metavar="PRIO", help=REALTIME_HELP)
    ap.add_argument("--one", metavar="POLICY", help=argparse.SUPPRESS)  # a --fresh child
    args = ap.parse_args()
    guest = Path(args.guest).read_bytes()
    if args.one:
        print(json.dumps(run_once(guest, args.one)))
        return 0
    args.cpu = pin_cpu(args.cpu)  # inherited by --fresh runs
    set_realtime(args.realtime)  # inherited too

    def once(p: str) -> dict:
        if not args.fresh:
            return run_once(guest, p)
        r = subprocess.run([sys.executable, __file__, "--guest", args.guest, "--one", p],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"bench_trace: {p}: status {r.returncode}: {r.stderr.strip()[-300:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    policies = args.policies.split(",")
    runs: dict[str, list[dict]] = {p: [] for p in policies}
    for _ in range(args.rounds):
        for p in policies:
            runs[p].append(once(p))
    print(f"{Path(args.guest).name}, median of {args.rounds} rounds, "
          f"{'a fresh process per run' if args.fresh else 'in one process'}, CPU {args.cpu}, load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"{'policy':12s} {'bytes':>6s} {'IO exits':>9s} {'exits/byte':>10s} {'wall s':>7s} "
          f"{'steady s':>8s} {'µs/byte':>8s} {'vs off':>7s}")
    base = None
    for p in policies:
        rs = runs[p]
        st = rs[-1]
        nbytes = st["serial_len"]
        exits = st["exits"]["io"] + st["exits"]["mmio"]
        wall = statistics.median(r["wall_s"] for r in rs)
        steady = statistics.median(r["steady_s"] for r in rs)
        per = steady / max(1, nbytes - 1) * 1e6
        if p == "off":
            base = (per, exits)
        rel = f"{base[0] / per:6.1f}x" if base and p != "off" else ""
        print(f"{p:12s} {nbytes:6d} {exits:9d} {exits / nbytes:10.4f} {wall:7.3f} {steady:8.3f} "
              f"{per:8.2f} {rel}")
        if base and p != "off":
            print(f"{'':12s} IO exits {base[1] / max(1, exits):.0f}x fewer than off")
    print("load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
