"""``python -m pykvmm.measure``: sweep guests x policies x extents x repeats, with baselines.

Every user mistake (an unknown guest or policy, a bad extent) is one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from ..cli import _warmup
from ..coalesce.engine import COMMAND_LINE_WARMUP
from ..errors import KvmError, PykvmmError, UsageError
from . import options as O
from .progress import Progress
from .summary import mark_against_off, qemu_row, summarize
from .table import IO_EXITS_NOTE, HEADLINE_COLUMNS, document, headline_rows, markdown

ROOT = Path(__file__).resolve().parents[2]
GUESTS_DIR = ROOT / "guests"
STATUS_USAGE = 2
STATUS_FAULT = 3
DEFAULT_HEADLINE = ("uart_spin", "mmio_uart", "fig8")
DEFAULT_QEMU_GUESTS = ("uart_spin",)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2
        self.exit(STATUS_USAGE, f"pykvmm.measure: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m pykvmm.measure",
                description="Measure VM exits and time for each guest under each coalescing "
                            "policy and extent, with KVM's coalesced ring and QEMU as baselines.")
    p.add_argument("--guests", metavar="A,B", help="guest names from guests/ or paths to .bin "
                   "files (default: every guest except the interactive echo)")
    p.add_argument("--policies", metavar="P,Q", help="from " + ", ".join(O.all_policies())
                   + " (default: all)")
    p.add_argument("--extents", metavar="N,M", help="extents for the engine policies (default: "
                   + ",".join(map(str, O.default_extents())) + ")")
    p.add_argument("--warmup", type=_warmup, default=COMMAND_LINE_WARMUP, metavar="N|auto",
                   help="the engine policies' warm-up, as pykvmm's --warmup (default: "
                        f"{COMMAND_LINE_WARMUP}, the command line's; 0: the patent's figures, "
                        "every site a candidate from its first exit)")
    p.add_argument("-r", "--repeats", default="3", metavar="R", help="runs per configuration (default 3)")
    p.add_argument("--out", default="results/exit-counts", metavar="DIR",
                   help="where results.json, table.md and the plots go (default results/exit-counts)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="per run (default 60)")
    p.add_argument("--headline", metavar="A,B", help="guests of the headline table (default: "
                   + ",".join(DEFAULT_HEADLINE) + ", those measured)")
    p.add_argument("--headline-extent", default="10", metavar="N",
                   help="the engine policies' extent in the headline table and the wall-time plot")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--no-qemu", action="store_true", help="skip the QEMU baseline")
    q.add_argument("--qemu-guests", metavar="A,B", default=",".join(DEFAULT_QEMU_GUESTS),
                   help="guests run under QEMU (default uart_spin; QEMU starts in seconds)")
    p.add_argument("--qemu", metavar="PATH", help="the QEMU binary (default qemu-system-x86_64 on PATH)")
    p.add_argument("--no-plot", action="store_true", help="write no plots")
    p.add_argument("--plot-format", choices=["png", "svg"], default="png")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--render", metavar="RESULTS.json",
                   help="run nothing: write table.md and the plots again from a results.json")
    return p


def _git_version() -> str:
    try:
        p = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                           text=True, timeout=10)
        return p.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _headline_extent(text: str, extents: list):
    choice = O.parse_extents(text)
    if len(choice) != 1:
        raise UsageError(f"--headline-extent takes one extent, not {text!r}")
    return choice[0]


def _dump(results: dict) -> str:
    """results.json: readable summary, one line per run (keeps the file small enough to commit)."""
    runs = results["runs"]
    head = json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=1)
    body = ",\n".join("  " + json.dumps(r, separators=(",", ":")) for r in runs)
    return head[:-2] + ',\n "runs": [\n' + body + "\n ]\n}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        guests = O.parse_guests(args.guests, GUESTS_DIR)
        policies = O.parse_policies(args.policies)
        extents = O.parse_extents(args.extents)
        repeats = O.parse_repeats(args.repeats)
        head_extent = _headline_extent(args.headline_extent, extents)
        if not args.timeout > 0:
            raise UsageError(f"--timeout must be a positive number of seconds, not {args.timeout}")
        out_dir = Path(args.out)
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"--out {out_dir} exists and is not a directory")
        headline = [g for g in (O._split(args.headline, "--headline") if args.headline
                                else DEFAULT_HEADLINE) if g in guests] or list(guests)
        qemu_guests = [] if args.no_qemu else O._split(args.qemu_guests, "--qemu-guests")
        for g in qemu_guests:
            if g not in guests:
                raise UsageError(f"--qemu-guests {g} is not among the measured guests "
                                 f"({', '.join(guests)})")
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.render:
            return _render(args, Path(args.render), head_extent, out_dir)
        return _sweep(args, guests, policies, extents, repeats, head_extent, headline,
                      qemu_guests, out_dir)
    except UsageError as e:
        print(f"pykvmm.measure: error: {e}", file=sys.stderr)
        return STATUS_USAGE
    except (KvmError, PykvmmError) as e:
        print(f"pykvmm.measure: {e}", file=sys.stderr)
        return STATUS_FAULT


def _render(args, path: Path, head_extent, out_dir: Path) -> int:
    try:
        data = json.loads(path.read_text())
        meta, rows, notes = data["meta"], data["summary"], data.get("notes", [])
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"--render {path}: not a pykvmm.measure results file ({e})") from None
    mark_against_off(rows)
    measured = list(dict.fromkeys(r["guest"] for r in rows))
    headline = [g for g in (O._split(args.headline, "--headline") if args.headline
                            else DEFAULT_HEADLINE) if g in measured] or measured
    head = headline_rows(rows, headline, head_extent)
    (out_dir / "table.md").write_text(document(meta, rows, head, notes))
    print(markdown(head, HEADLINE_COLUMNS), end="")
    written = [out_dir / "table.md"]
    return _plot_and_report(args, rows, out_dir, head_extent, written)


def _plot_and_report(args, rows, out_dir: Path, head_extent, written: list) -> int:
    """Draw the plots unless --no-plot (when matplotlib is there), then list what was written."""
    if not args.no_plot:
        from .plot import PLOT_HINT, have_matplotlib, plot_all

        if have_matplotlib():
            written += plot_all(rows, out_dir, head_extent, args.plot_format)
        else:
            print(f"plots skipped: {PLOT_HINT}")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _sweep(args, guests, policies, extents, repeats, head_extent, headline, qemu_guests,
           out_dir: Path) -> int:
    from .qemu import count_exits as count_qemu_exits, find_qemu, is_boot_sector, measure as measure_qemu
    from .runner import run_one

    configs = O.configurations(policies, extents)
    skipped: list[str] = []
    qemu = None
    if qemu_guests:
        qemu = find_qemu(args.qemu)
        if qemu is None:
            skipped.append(f"QEMU baseline skipped: {args.qemu or 'qemu-system-x86_64'} not found "
                           "(Debian: apt-get install qemu-system-x86)")
            qemu_guests = []
    images = {g: p.read_bytes() for g, p in guests.items()}
    for g in list(qemu_guests):
        if not is_boot_sector(images[g]):
            skipped.append(f"QEMU baseline skipped for {g}: not a 512-byte boot sector")
            qemu_guests.remove(g)
    total = len(guests) * len(configs) * repeats + 2 * repeats * len(qemu_guests)
    bar = Progress(total, enabled=not args.quiet)
    runs: list[dict] = []
    started = time.time()
    for g, image in images.items():
        for rep in range(repeats):  # configurations interleaved, so host noise hits them alike
            for policy, extent in configs:
                rec = run_one(image, policy, extent, timeout=args.timeout, warmup=args.warmup)
                rec.update(guest=g, policy=policy, extent=extent, repeat=rep)
                runs.append(rec)
                bar.step(f"{g} {policy}{'' if extent is None else f' e{extent}'} r{rep + 1}")
    rows = []
    for g in images:
        for policy, extent in configs:
            sel = [r for r in runs if r["guest"] == g and r["policy"] == policy and r["extent"] == extent]
            rows.append(summarize(g, policy, extent, sel))
    mark_against_off(rows)
    qemu_results = {}
    for g in qemu_guests:
        q = measure_qemu(qemu, images[g], repeats, timeout=max(args.timeout, 120.0),
                         on_run=lambda g=g: bar.step(f"{g} qemu"))
        if q["ok"] and q["printed_bytes"]:
            # KVM's statistics for QEMU's vCPU through QMP, net of the empty boot sector's
            q["exit_counts"] = count_qemu_exits(qemu, images[g], q["printed_bytes"],
                                                timeout=max(args.timeout, 120.0))
            if q["exit_counts"] is None:
                skipped.append(f"QEMU exit counts for {g} unavailable (QMP query-stats, QEMU 7.1+)")
        qemu_results[g] = q
        rows.append(qemu_row(g, q))
        if not q["ok"]:
            skipped.append(f"QEMU run of {g} did not end by debug-exit: statuses "
                           f"{sorted({r['status'] for r in q['runs']}, key=str)}")
    bar.close()
    mark_against_off(rows)
    order = {g: i for i, g in enumerate(images)}
    rows.sort(key=lambda r: order[r["guest"]])  # stable: policies stay in sweep order
    for r in rows:
        if r["end"] != ["debug-exit"] and r["policy"] != "qemu":
            skipped.append(f"{r['guest']} under {r['policy']} ended {'/'.join(r['end'])}")
    meta = {
        "host": platform.node(), "cpu": _cpu_model(), "kernel": platform.release(),
        "python": platform.python_version(), "commit": _git_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m pykvmm.measure " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "repeats": repeats, "warmup": args.warmup, "guests": list(images), "policies": policies, "extents": extents,
        "sweep_s": round(time.time() - started, 1), "note": IO_EXITS_NOTE,
    }
    head = headline_rows(rows, headline, head_extent)
    for r in runs:  # per-port counts stay in the summary rows (the first run's)
        del r["io_ops_by_port"], r["mmio_ops_by_addr"]
    results = {"meta": meta, "summary": rows, "runs": runs, "qemu": qemu_results, "notes": skipped}
    (out_dir / "results.json").write_text(_dump(results))
    (out_dir / "table.md").write_text(document(meta, rows, head, skipped))
    print(markdown(head, HEADLINE_COLUMNS), end="")
    print(IO_EXITS_NOTE)
    for s in skipped:
        print(s)
    written = [out_dir / "results.json", out_dir / "table.md"]
    return _plot_and_report(args, rows, out_dir, head_extent, written)
