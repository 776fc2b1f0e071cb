#!/usr/bin/env python3
"""Assemble guests/*.asm and firmware/*.asm with nasm into flat binaries beside them.

    python scripts/build_guests.py            # (re)build every image
    python scripts/build_guests.py --check    # build into a temporary folder and compare

The built images are committed, so running pykvmm needs no assembler; --check (run by the test
suite) proves that each committed image is what its source assembles to.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("guests", "firmware")


def sources() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (ROOT / d).glob("*.asm"))


def assemble(src: Path, out: Path) -> None:
    subprocess.run(["nasm", "-f", "bin", "-w+all", "-I", str(src.parent) + "/", "-o", str(out), str(src)],
                   check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare committed images with a fresh build")
    args = ap.parse_args(argv)
    if shutil.which("nasm") is None:
        print("build_guests: nasm is not installed (apt-get install -y nasm)", file=sys.stderr)
        return 2
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources():
            target = src.with_suffix(".bin")
            out = Path(tmp) / target.name if args.check else target
            assemble(src, out)
            if args.check:
                if not target.exists() or target.read_bytes() != out.read_bytes():
                    bad.append(str(target.relative_to(ROOT)))
            else:
                print(f"{target.relative_to(ROOT)}: {out.stat().st_size} bytes")
    if bad:
        print("stale images (run scripts/build_guests.py): " + ", ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
