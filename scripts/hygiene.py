#!/usr/bin/env python3
"""Run many VMs in one process and show that descriptors, resident memory and mappings stay flat.

    python scripts/hygiene.py [--count 1000] [--threads 4]

First ``--count`` VMs one after another (modes off, fig5, trace in turn; each boots pykvmm's
firmware, prints 20 bytes and exits), sampling the process every 100 VMs; then ``--threads``
VMs at once, each printing its own letter, checked for cross-talk.  Exits 1 when a figure grew.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.kvm import hygiene as H  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--threads", type=int, default=4)
    args = p.parse_args(argv)
    t = time.monotonic()
    print(f"{'vms':>6} {'fds':>4} {'rss MiB':>8} {'maps':>5} {'threads':>7}")

    def show(s):
        print(f"{s['vms']:>6} {s['fds']:>4} {s['rss'] / 2**20:>8.1f} {s['maps']:>5} {s['threads']:>7}",
              flush=True)

    samples = H.sequential(args.count, every=100, progress=show)
    first, last = samples[0], samples[-1]
    grew = last["fds"] != first["fds"] or last["maps"] > first["maps"] + 2 or \
        last["rss"] - first["rss"] > 16 << 20
    print(f"{args.count} VMs in {time.monotonic() - t:.0f} s: fds {first['fds']} -> {last['fds']}, "
          f"RSS {first['rss'] / 2**20:.1f} -> {last['rss'] / 2**20:.1f} MiB, "
          f"maps {first['maps']} -> {last['maps']}")
    with tempfile.TemporaryDirectory() as d:
        results = H.parallel(args.threads, 3000, d)
    clean = all(r["serial"] == r["letter"].encode() * 3000 and r["marker"] == 3000 for r in results)
    print(f"{args.threads} VMs at once: " + ("no cross-talk" if clean else "CROSS-TALK"))
    return 1 if grew or not clean else 0


if __name__ == "__main__":
    sys.exit(main())
