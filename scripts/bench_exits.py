#!/usr/bin/env python3
"""Cost of one VM exit: pykvmm's run loop against a bare C loop and a bare Python ctypes loop.

    python scripts/bench_exits.py [--rounds 5]

All three run guests/out_loop.bin (200,000 OUTs to an unclaimed port) in the same process run,
interleaved round by round so that host noise hits them alike; the median per round is reported.
The C loop is compiled from scripts/bench/bare_kvm_loop.c with the system C compiler.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pykvmm.kvm import ioctls as K  # noqa: E402
from pykvmm.kvm._libc import ioctl  # noqa: E402
from pykvmm.machine.machine import Machine, MachineConfig  # noqa: E402

GUEST = ROOT / "guests" / "out_loop.bin"


def bare_c(exe: Path) -> float:
    out = subprocess.run([str(exe), str(GUEST)], check=True, capture_output=True, text=True).stdout
    fields = dict(kv.split("=") for kv in out.split())
    return float(fields["seconds"]) / int(fields["exits"])


def bare_python() -> float:
    """KVM_RUN through ctypes and a port check, nothing else (the machine only sets up memory)."""
    with Machine(MachineConfig(serial="null")) as m:
        m.load_guest(GUEST.read_bytes())
        fd, page, run = m.vcpu.fd, m.vcpu.page, K.KVM_RUN
        n = 0
        t = time.perf_counter()
        while True:
            ioctl(fd, run, 0)
            n += 1
            if page[34] == 0xF4:  # kvm_run.io.port low byte
                break
        return (time.perf_counter() - t) / n


def pykvmm_loop() -> float:
    with Machine(MachineConfig(serial="null")) as m:
        m.load_guest(GUEST.read_bytes())
        r = m.run(timeout=120)
        assert r.end == "debug-exit"
        return r.wall_s / m.exit_counts["total"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args()
    cc = shutil.which("cc") or shutil.which("gcc")
    with tempfile.TemporaryDirectory() as d:
        exe = Path(d) / "bare"
        c_ok = cc is not None
        if c_ok:
            subprocess.run([cc, "-O2", "-o", str(exe), str(ROOT / "scripts/bench/bare_kvm_loop.c")], check=True)
        res: dict[str, list[float]] = {"bare_c": [], "bare_python": [], "pykvmm": []}
        for _ in range(args.rounds):
            if c_ok:
                res["bare_c"].append(bare_c(exe))
            res["bare_python"].append(bare_python())
            res["pykvmm"].append(pykvmm_loop())
    med = {k: statistics.median(v) * 1e6 for k, v in res.items() if v}
    print(f"µs per exit, median of {args.rounds} rounds of 200,000 OUT exits (guests/out_loop.bin):")
    for k, v in med.items():
        print(f"  {k:12s} {v:6.2f}   (min {min(res[k]) * 1e6:.2f})")
    if "bare_c" in med:
        print(f"  pykvmm / bare C = {med['pykvmm'] / med['bare_c']:.2f}x (target <= 1.2x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"us_per_exit_median": med}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
