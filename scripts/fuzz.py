#!/usr/bin/env python3
"""Differential fuzzing for as long as asked: generated guests under off and every coalescing mode.

    python scripts/fuzz.py --seconds 600 [--seed S] [--timeout T] [--save-dir DIR]

Each program (tests/kvm/fuzz.py: random bytes or well-formed mixes of IO, ALU, memory, MMIO,
string IO, loops and self-modifying code) runs in-process uncoalesced and then under every mode
at an extent cycling through 1, 3, 10 and 50, with the hash mode, --literal and the table size
varied too.  A program whose results differ from the
uncoalesced run (or that a mode hangs on: it times out where off needed a tenth of the timeout)
is saved as a regression guest (DIR/fuzz-<sha>.bin with a .json naming the
extent and the difference), which tests/kvm/test_fuzz_regressions.py replays.  At the end the
script prints the programs run and the verdicts; it exits 1 when it found a divergence.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.kvm import fuzz as F  # noqa: E402

EXTENTS = (1, 3, 10, 50)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60, help="how long to fuzz (default 60)")
    p.add_argument("--seed", type=int, default=None, help="first program's seed (default: random)")
    p.add_argument("--timeout", type=float, default=2.0, help="per-run guest timeout in seconds")
    p.add_argument("--save-dir", default=str(ROOT / "tests" / "kvm" / "fuzz_regressions"),
                   help="where failing programs are saved")
    p.add_argument("--max-saves", type=int, default=20, help="stop saving after this many")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    save_dir = Path(args.save_dir)
    verdicts: collections.Counter = collections.Counter()
    signatures: collections.Counter = collections.Counter()
    saved = 0
    modes = F.modes()
    print(f"fuzz: seed {seed}, modes off + {', '.join(modes)}, {args.seconds:g} s", flush=True)
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < args.seconds:
        r = random.Random(seed + n)
        code = F.program(r)
        extent = EXTENTS[n % len(EXTENTS)]
        # Engine options vary too: the hash with or without the address, the patent's literal
        # flow, and a table of two entries (constant eviction).
        kw = {"hash_mode": ("block+address", "block")[n // 4 % 2], "literal": bool(n // 8 % 2),
              "table_size": 2 if n % 16 >= 12 else 4096}
        n += 1
        v = F.differential(code, timeout=args.timeout, extent=extent, mode_list=modes, **kw)
        verdicts[v.kind] += 1
        if v.kind not in ("divergence", "hang"):
            continue
        # One saved program per kind of difference is enough to reproduce it.
        sig = v.detail.split(":")[1].strip() if ":" in v.detail else v.detail
        signatures[sig] += 1
        if not args.quiet:
            print(f"  divergence (seed {seed + n - 1}, extent {extent}): {v.detail[:300]}", flush=True)
        if signatures[sig] == 1 and saved < args.max_saves:
            save_dir.mkdir(parents=True, exist_ok=True)
            name = f"fuzz-{hashlib.sha256(code).hexdigest()[:12]}"
            (save_dir / f"{name}.bin").write_bytes(code)
            (save_dir / f"{name}.json").write_text(json.dumps(
                {"extent": extent, "engine": kw, "seed": seed + n - 1, "detail": v.detail},
                indent=1) + "\n")
            saved += 1
            print(f"  saved {save_dir / name}.bin", flush=True)
    took = time.monotonic() - start
    print(f"fuzz: {n} programs x {1 + len(modes)} modes in {took:.0f} s: {dict(verdicts)}; "
          f"{saved} saved")
    return 1 if verdicts["divergence"] or verdicts["hang"] else 0


if __name__ == "__main__":
    sys.exit(main())
