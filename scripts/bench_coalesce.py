#!/usr/bin/env python3
"""Exit counts and wall time under each coalescing policy, for the issue's target workloads.

    python scripts/bench_coalesce.py [--rounds 3] [--guests uart_spin,fig8,...|all]
                                     [--policies off,fig5,trace:10] [--extent N|auto]
                                     [--warmup auto|N] [--slower PCT] [--fresh] [--cpu N|none]

For each guest and policy it runs the guest R times (serial output to a temporary file, pykvmm's
firmware first), in this process or, with --fresh, each run as its own ``python -m pykvmm``
process as a user runs it (figures from its --stats-json), and prints IO exits, IO exits per printed byte, completion runs, and the
median wall time of the run loop.  All policies of a guest are interleaved round by round so that
host noise hits them alike.  When ``off`` is among the policies, ``vs off`` is each policy's median
wall time relative to off's, marked ``SLOWER`` beyond --slower percent; a last line lists those.
``paired`` is the median of each round's ratio to off's run in the same round, minus one: the
runs of a round follow one another, so a burst of host noise that lasts a round moves it less
than it moves one of the medians (runs of 3 ms spread by 10-50 % here).
``engine`` is the median time the run loop spent inside the engine's calls (stats
coalesce.engine_us: decoding, emulation, completion runs and bookkeeping) relative to off's
median wall time: the engine's own cost, measured on the host's clock without KVM_RUN's noise.
When a policy takes no more exits than off, everything else in its run costs the same or less,
so this is what the policy can cost over off (the measured difference, beyond noise, cannot be
larger); ``interval`` is a bootstrap 90 % interval of ``paired`` over the rounds.  The last lines
list the pairs whose median is beyond --slower, and among them those whose whole interval is
beyond it too, or whose engine cost is while they saved no exits (slower beyond the noise: a mode
that saved exits spent part of its engine time in place of them).  The exits column is the median
round's; pairs whose count differs by over 5 % between rounds (the profitability scores are timed
on the host's clock) are listed at the end with their range.
``--guests all`` takes every guest image in guests/ except the interactive echo.  Each policy
runs with the command line's defaults (extent 10, auto for trace; warm-up auto) unless --extent,
--warmup or a ``NAME:EXTENT`` policy says otherwise.

In-process rounds after the first find the guest's code decoded and compiled in memory; a fresh
process finds only the on-disk code cache, so --fresh is what a user's run costs.  --cpu pins
the benchmark (and with --fresh each run) to one CPU: on this 2-CPU host a vCPU thread that the
scheduler moves between CPUs spends up to 40 % longer in KVM_RUN (cmos_pairs, off: 12.2 ms in
KVM_RUN pinned in 10 runs of 10; 12.8-17.6 ms unpinned), the same for every policy.
"""

from __future__ import annotations

import argparse
import os
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pykvmm.cli import read_firmware  # noqa: E402
from pykvmm.coalesce.engine import (AUTO_EXTENT, AUTO_WARMUP, COMMAND_LINE_WARMUP,  # noqa: E402
                                    CoalescingEngine, policy_spec)
from pykvmm.machine.machine import Machine, MachineConfig  # noqa: E402
from pykvmm.measure.runner import CPU_HELP, REALTIME_HELP, pin_cpu, set_realtime  # noqa: E402


# Guests whose wall time the host's clock sets, not their exits: pit_tick counts PIT ticks
# between two changes of the RTC's seconds, so a run lasts 1-2 s by the phase of the RTC second
# it starts in, whatever the policy (measured: off 1.82 s and 1.98 s in consecutive rounds).
# pic_init polls for the RTC's 1024 Hz periodic flag, which comes 0-976 us after it enables it
# by the phase of the RTC's divider chain (measured, off, 8 fresh runs pinned to one CPU:
# 133-369 exits, 3.6-6.1 ms; fig5 and trace alike).
# Their figures are printed but not judged against off; tests/kvm/test_platform_guests.py checks
# that every policy counts the same 18 +- tolerance ticks.
CLOCK_PACED = frozenset({"pit_tick", "pic_init"})


def run_once(guest: Path, policy: str, extent: int | str | None, firmware: bool,
             warmup: int | str = COMMAND_LINE_WARMUP) -> dict:
    """One run; ``policy`` may be ``NAME:EXTENT``; extent None: the command line's default."""
    policy, extent = policy_spec(policy, extent)
    fd, out = tempfile.mkstemp()
    os.close(fd)
    fw, kind = read_firmware(None) if firmware else (None, "builtin")
    try:
        with Machine(MachineConfig(serial=f"file:{out}", firmware=fw, firmware_kind=kind,
                                   serial_input=False)) as m:
            m.load_guest(guest.read_bytes())
            if policy != "off":
                m.engine = CoalescingEngine(m, policy, extent=extent, warmup=warmup)
            r = m.run(timeout=300)
            st = m.stats(r)
        st["serial_len"] = Path(out).stat().st_size
        return st
    finally:
        os.unlink(out)


def run_fresh(guest: Path, policy: str, extent: int | str | None, firmware: bool,
              warmup: int | str = COMMAND_LINE_WARMUP) -> dict:
    """One run as its own ``python -m pykvmm`` process, as a user runs it: its --stats-json."""
    policy, extent = policy_spec(policy, extent)
    fd, out = tempfile.mkstemp()
    os.close(fd)
    fd, js = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", "pykvmm", "--serial", f"file:{out}", "--coalesce", policy,
           "--warmup", str(warmup), "--stats-json", js, "--timeout", "300"]
    if extent is not None:
        cmd += ["--extent", str(extent)]
    if not firmware:
        cmd.append("--no-firmware")
    try:
        r = subprocess.run(cmd + [str(guest)], cwd=ROOT, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            with open(js) as f:
                st = json.load(f)
        except (OSError, ValueError):
            raise SystemExit(f"bench_coalesce: {guest.name} {policy}: no figures (status "
                             f"{r.returncode}): {r.stderr.strip()[-300:]}")
        st["serial_len"] = Path(out).stat().st_size
        return st
    finally:
        os.unlink(out)
        os.unlink(js)


def bootstrap_interval(ratios: list[float], draws: int = 2000, seed: int = 1) -> tuple[float, float]:
    """A 90 % bootstrap interval of the median of ``ratios`` (resampling the rounds)."""
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(draws))
    return meds[int(draws * 0.05)], meds[int(draws * 0.95) - 1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--guests", default="uart_spin,mmio_uart,fig8,pit_program,pic_sequence,cmos_pairs")
    ap.add_argument("--policies", default="off,fig5,fig6,fig7")
    ap.add_argument("--extent", default=None,
                    type=lambda t: t if t == AUTO_EXTENT else int(t),
                    help="every policy's extent (default: the command line's, 10 or auto for trace)")
    ap.add_argument("--discard", type=int, default=1, metavar="N",
                    help="rounds run first and not counted (default 1: a guest's first run in a "
                         "process decodes its code and loads it from the code cache, and the "
                         "spread between rounds is then 25-50 %% for runs of a few ms; with --fresh, "
                         "the first run after a guest or pykvmm changed fills the on-disk code "
                         "cache)")
    ap.add_argument("--no-firmware", action="store_true")
    ap.add_argument("--warmup", default=COMMAND_LINE_WARMUP,
                    type=lambda t: t if t == AUTO_WARMUP else int(t),
                    help="exits a site takes natively before it is emulated: auto (the command "
                         "line's default: calibrated), 0 (from the first sighting) or N")
    ap.add_argument("--slower", type=float, default=5.0, metavar="PCT",
                    help="mark policies whose median wall time exceeds off's by more than this")
    ap.add_argument("--fresh", action="store_true",
                    help="run each guest as its own python -m pykvmm process (what a user's run "
                         "costs: no code decoded or compiled in memory beforehand)")
    ap.add_argument("--cpu", default="last", metavar="N|none",
                    help=CPU_HELP)
    ap.add_argument("--realtime", type=int, default=0, metavar="PRIO", help=REALTIME_HELP)
    args = ap.parse_args()
    args.cpu = pin_cpu(args.cpu)  # inherited by --fresh runs
    set_realtime(args.realtime)  # inherited too
    once = run_fresh if args.fresh else run_once
    print(f"extent {args.extent or 'as the command line'}, warmup {args.warmup}, median of {args.rounds} rounds after {args.discard} discarded, "
          f"{'a fresh process per run' if args.fresh else 'in one process'}, CPU {args.cpu}; "
          "exits.io counts port-IO exits, exits.mmio MMIO exits; load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"{'guest':14s} {'policy':10s} {'io+mmio exits':>13s} {'per byte':>9s} {'completions':>11s} "
          f"{'io_ops':>8s} {'wall s':>8s} {'spread':>7s} {'µs/byte':>8s} {'engine':>7s} {'paired':>8s} "
          f"{'interval':>15s}{'vs off':>8s}")
    names = args.guests.split(",")
    if names == ["all"]:
        names = sorted(p.stem for p in (ROOT / "guests").glob("*.bin") if p.stem != "echo")
    slower: list[str] = []
    beyond: list[str] = []  # slower by its whole interval, or by its engine cost with no exit saved
    varied: list[str] = []  # pairs whose exit count differs by over 5 % between rounds
    policies = args.policies.split(",")
    for name in names:
        if not (ROOT / "guests" / f"{name}.bin").exists():
            print(f"{name:14s} (not built)")
    names = [n for n in names if (ROOT / "guests" / f"{n}.bin").exists()]
    paced = [n for n in names if n in CLOCK_PACED]
    # Rounds outermost: a burst of host noise (here a run of a few ms varies by 5-30 % while it
    # lasts, e.g. with the kernel's memory monitor busy) then falls on one round of each guest
    # and policy, which the median discards, rather than on all rounds of one guest.
    walls = {n: {p: [] for p in policies} for n in names}
    engine = {n: {p: [] for p in policies} for n in names}
    exit_counts = {n: {p: [] for p in policies} for n in names}
    lasts: dict[str, dict[str, dict]] = {n: {} for n in names}
    for r in range(args.discard + args.rounds):
        for name in names:
            guest = ROOT / "guests" / f"{name}.bin"
            for p in policies:
                st = once(guest, p, args.extent, not args.no_firmware, args.warmup)
                if r >= args.discard:
                    walls[name][p].append(st["wall_s"])
                    engine[name][p].append(st["coalesce"].get("engine_us", 0.0) * 1e-6)
                    exit_counts[name][p].append(st["exits"]["io"] + st["exits"]["mmio"])
                    lasts[name][p] = st
    for name in names:
        last = lasts[name]
        off_exits = (int(statistics.median_low(exit_counts[name]["off"]))
                     if "off" in exit_counts[name] else None)
        for p in policies:
            st = last[p]
            # The median round's exits: a coalescing mode's count can differ between rounds (its
            # profitability scores are timed), and one round's count is no summary of five.
            exits = int(statistics.median_low(exit_counts[name][p]))
            lo_x, hi_x = min(exit_counts[name][p]), max(exit_counts[name][p])
            if hi_x > lo_x * 1.05:
                varied.append(f"{name}/{p} {lo_x}-{hi_x}")
            nbytes = st["serial_len"] + st.get("serial2_bytes", 0)
            wall = statistics.median(walls[name][p])
            # The rounds' spread, (max - min) / median: how far apart the same run lands on this
            # host (runs of a few ms differ by 5-20 % here), to read "vs off" against.
            w = walls[name][p]
            spread = f"{(max(w) - min(w)) / wall * 100:6.1f}%" if wall else f"{'-':>7s}"
            per = f"{exits / nbytes:9.3f}" if nbytes else f"{'-':>9s}"
            us = f"{wall / nbytes * 1e6:8.2f}" if nbytes else f"{'-':>8s}"
            comp = st["coalesce"].get("completions", 0)
            rel = paired = interval = eng = ""
            if "off" in walls[name] and p != "off":
                off = statistics.median(walls[name]["off"])
                pct = (wall / off - 1) * 100
                rel = f"{pct:+6.1f}%"
                eng_pct = statistics.median(engine[name][p]) / off * 100 if off else 0.0
                eng = f"{eng_pct:6.1f}%"
                # Paired: the median of each round's ratio to off's run in the same round (run
                # just before it), which a burst of host noise over one round moves less.
                ratios = [a / b for a, b in zip(w, walls[name]["off"]) if b]
                lo = -1e9
                if ratios:
                    paired = f"{(statistics.median(ratios) - 1) * 100:+6.1f}%"
                    lo, hi = ((x - 1) * 100 for x in bootstrap_interval(ratios))
                    interval = f"[{lo:+5.1f},{hi:+5.1f}]%"
                if name in CLOCK_PACED:
                    rel += " (clock-paced)"
                elif pct > args.slower:
                    rel += " SLOWER"
                    slower.append(f"{name}/{p} {pct:+.1f}%")
                    # The engine's cost bounds the slowdown only of a mode that saved no exits
                    # (one that saved some spent part of it in place of those exits).
                    no_saving = exits >= off_exits
                    if (no_saving and eng_pct > args.slower) or lo > args.slower:
                        beyond.append(f"{name}/{p} (engine {eng_pct:.1f}%, interval from {lo:+.1f}%)")
            print(f"{name:14s} {p:10s} {exits:13d} {per} {comp:11d} {st['io_ops']['total']:8d} "
                  f"{wall:8.3f} {spread} {us} {eng:>7s} {paired:>8s} {interval:>15s}{rel}")
    if "off" in args.policies.split(","):
        print(f"more than {args.slower:g}% slower than off: " + (", ".join(slower) or "none")
              + (f" (not judged, paced by the host's clock: {', '.join(paced)})"
                 if paced and len(policies) > 1 else ""))
        print(f"  of these, beyond the noise (the whole interval, or the engine's cost where no exit "
              f"was saved, above {args.slower:g}%): "
              + (", ".join(beyond) or "none"))
    if varied:
        print("exits differing by over 5% between rounds (min-max): " + ", ".join(varied))
    print("load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
