"""The command line: ``python -m pykvmm GUEST.bin [options]`` (also installed as ``pykvmm``).

Every user mistake becomes one line on stderr and exit status 2, never a traceback: argparse's
two-line usage error is folded into one, and PykvmmError's UsageError children are caught here,
at the one boundary where errors are wrapped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .coalesce.engine import (AUTO_WARMUP, COMMAND_LINE_WARMUP, DEFAULT_EXTENT, DEFAULT_POLICY,
                              MAX_EXTENT, MAX_WARMUP, OFF, POLICIES, CoalescingEngine,
                              command_line_extent)
from .coalesce.hashing import DEFAULT_TABLE_SIZE, HASH_BLOCK, HASH_BLOCK_ADDRESS
from .errors import GuestFault, KvmError, PykvmmError, UsageError
from .machine import layout
from .machine.coalesced_ring import CoalescedRing
from .machine.iolog import IoLog
from .x86.emulator import DEFAULT_CACHE_ENTRIES
from .machine.machine import STATUS_FAULT, STATUS_USAGE, Machine, MachineConfig

EPILOG = """\
exit status: the guest's debug-exit value v (a byte written to port 0xF4), or (v << 1) | 1 with
--exit-code qemu; 0 when the guest halts with interrupts off; 2 for a usage error, 3 for a guest
fault (a report goes to stderr), 124 for --timeout, 130/143 for SIGINT/SIGTERM.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2
        self.exit(STATUS_USAGE, f"pykvmm: error: {message} (see pykvmm --help)\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _mem_mib(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of MiB, not {text!r}") from None
    if not layout.MIN_MEM_MIB <= value <= layout.MAX_MEM_MIB:
        raise argparse.ArgumentTypeError(
            f"must be between {layout.MIN_MEM_MIB} and {layout.MAX_MEM_MIB} MiB, not {value}")
    return value


def _serial_spec(text: str) -> str:
    if text in ("stdio", "null") or (text.startswith("file:") and len(text) > 5):
        return text
    raise argparse.ArgumentTypeError(f"must be stdio, null or file:PATH, not {text!r}")


def _extent(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or auto, not {text!r}") from None
    if not 1 <= value <= MAX_EXTENT:
        raise argparse.ArgumentTypeError(f"must be a positive integer up to {MAX_EXTENT} or auto, not {value}")
    return value


def _warmup(text: str) -> int | str:
    if text == AUTO_WARMUP:
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto or a whole number of exits, not {text!r}") from None
    if not 0 <= value <= MAX_WARMUP:
        raise argparse.ArgumentTypeError(f"must be auto or between 0 and {MAX_WARMUP}, not {value}")
    return value


def _table_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if not 1 <= value <= 10_000_000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 10000000, not {value}")
    return value


def _vm_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of VMs, not {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 1 and 64, not {value}")
    return value


def _run_many(args, image: bytes, config: MachineConfig) -> int:
    from .multi import run_vms, total_stats

    kw = {}
    if args.coalesce not in (OFF, KVM_RING):
        kw = dict(extent=args.extent, hash_mode=args.hash_mode, literal=args.literal,
                  table_size=args.table_size, warmup=args.warmup)
    logs: list[IoLog] = []

    def attach_log(i: int, m: Machine) -> None:
        if args.io_log:  # one log per VM, like the serial files: PATH.vmN
            log = IoLog(f"{args.io_log}.vm{i}")
            logs.append(log)
            log.attach(m)

    try:
        runs = run_vms(image, args.vms, config, args.coalesce, timeout=args.timeout,
                       setup=attach_log, **kw)
    except BaseException:
        for log in logs:
            log.close()
        raise
    try:
        per_vm = []
        status = 0
        for i, (m, r) in enumerate(runs):
            if r.exit_status == STATUS_FAULT and r.detail:
                print(f"vm{i}: {r.detail}", file=sys.stderr)
            st = {"vm": i, **m.stats(r)}
            per_vm.append(st)
            if r.exit_status and not status:
                status = r.exit_status
        if args.stats or args.stats_json:
            stats = {"guest": args.guest, "vms": args.vms, "per_vm": per_vm,
                     "total": total_stats(per_vm)}
            if args.stats:
                for st in per_vm:
                    print(f"vm{st['vm']}:", file=sys.stderr)
                    print(format_summary({"guest": args.guest, **st}), file=sys.stderr)
                t = stats["total"]
                print(f"total: exits {t['exits'].get('total', 0)} (io {t['exits'].get('io', 0)}), "
                      f"io ops {t['io_ops']}, serial bytes {t['serial_bytes']}", file=sys.stderr)
            if args.stats_json:
                with open(args.stats_json, "w") as f:
                    json.dump(stats, f, indent=1)
                    f.write("\n")
        return status
    finally:
        for log in logs:
            log.close()
        for m, _ in runs:
            m.close()


def _debugcon_spec(text: str) -> str:
    if text in ("stdio", "null") or text.startswith("file:"):
        return _serial_spec(text)
    if not text:
        raise argparse.ArgumentTypeError("must be a file path, stdio or null")
    return "file:" + text


KVM_RING = "kvm-ring"  # --coalesce kvm-ring: KVM's coalesced IO ring (machine/coalesced_ring.py)

FIRMWARE_IMAGE = Path(__file__).resolve().parent.parent / "firmware" / "bios.bin"


def read_firmware(path: str | None) -> tuple[bytes | None, str]:
    """(image, kind) for --bios PATH, pykvmm's own firmware, or None for --no-firmware."""
    kind = "external" if path else "builtin"
    target = Path(path) if path else FIRMWARE_IMAGE
    what = f"--bios {path}" if path else f"pykvmm's firmware {target}"
    if target.is_dir():
        raise UsageError(f"{what} is a directory; give the path of a firmware image")
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        hint = "check the path" if path else "run scripts/build_guests.py, or pass --no-firmware"
        raise UsageError(f"{what} does not exist; {hint}") from None
    except OSError as e:
        raise UsageError(f"cannot read {what}: {e.strerror}") from None
    if path and (not data or len(data) % 0x10000 or len(data) > 0x40000):
        raise UsageError(f"--bios {path} is {len(data)} bytes; a firmware image must be 64, 128, 192 "
                         "or 256 KiB")
    return data, kind


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pykvmm", description="Run a real-mode x86 guest under KVM and count its VM exits.",
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("guest", metavar="GUEST.bin",
                   help="flat binary loaded at 0x7C00 and entered at 0000:7C00 in real mode")
    p.add_argument("--serial", type=_serial_spec, default="stdio", metavar="stdio|file:PATH|null",
                   help="where COM1 output goes (default: stdio)")
    p.add_argument("--timeout", type=_positive_float, metavar="S",
                   help="stop the guest after S seconds (exit status 124)")
    p.add_argument("--mem", type=_mem_mib, default=layout.DEFAULT_MEM_MIB, metavar="MIB",
                   help=f"guest RAM in MiB (default {layout.DEFAULT_MEM_MIB})")
    p.add_argument("--stats", action="store_true", help="print a summary of exits and IO on stderr")
    p.add_argument("--stats-json", metavar="PATH", help="write the run's figures as one JSON object")
    p.add_argument("--serial2", type=_serial_spec, default="null", metavar="stdio|file:PATH|null",
                   help="output of the memory-mapped 16550 at 0xB0000 (default: null)")
    p.add_argument("--debugcon", type=_debugcon_spec, default="null", metavar="PATH",
                   help="file for bytes written to the debug console port 0x402 (also stdio, null)")
    fw = p.add_mutually_exclusive_group()
    fw.add_argument("--no-firmware", action="store_true",
                    help="start the guest directly at 0000:7C00 instead of running the firmware first")
    fw.add_argument("--bios", metavar="PATH",
                    help="run this firmware image (64-256 KiB, e.g. /usr/share/seabios/bios.bin) "
                         "instead of pykvmm's own")
    p.add_argument("--coalesce", choices=[*POLICIES, KVM_RING], default=DEFAULT_POLICY,
                   help="IO coalescing policy: the patent's Figure 5, 6 or 7 embodiment; trace "
                        "(emulate along the real control flow while IO keeps coming within the "
                        "extent); off; or kvm-ring (KVM's own coalesced IO ring on the UARTs' THR, "
                        f"a baseline) (default: {DEFAULT_POLICY})")
    p.add_argument("--extent", type=_extent, default=None, metavar="N|auto",
                   help="instructions scanned after the trapping IO instruction; with trace, the "
                        "most instructions between two IOs; auto: calibrated to this host's exit "
                        f"and emulation costs (default: {DEFAULT_EXTENT} for fig5, fig6 and fig7, "
                        "auto for trace)")
    p.add_argument("--hash", choices=[HASH_BLOCK_ADDRESS, HASH_BLOCK], default=HASH_BLOCK_ADDRESS,
                   dest="hash_mode",
                   help="fig5: hash the block with its address (default) or the block alone")
    p.add_argument("--literal", action="store_true",
                   help="follow the patent's flow exactly: in fig5 a site whose code changed stays "
                        "single instead of being rescanned, and no site is demoted for being "
                        "unprofitable")
    p.add_argument("--warmup", type=_warmup, default=None, metavar="N|auto",
                   help="exits a site takes natively before it is emulated: auto (default): decide "
                        "per site by the price of compiling its code against a forecast of the "
                        "exits emulating it would save, and demote emulations that measure "
                        "unprofitable (the engine also sits out a run's first exits and naps "
                        "through stretches where nothing pays); 0: from the first sighting, as the patent's figures; N: "
                        "after N exits. --literal means 0")
    p.add_argument("--table-size", type=_table_size, default=DEFAULT_TABLE_SIZE, metavar="N",
                   help=f"entries in the block table, least recently used dropped (default {DEFAULT_TABLE_SIZE})")
    p.add_argument("--decode-cache", type=_table_size, default=DEFAULT_CACHE_ENTRIES, metavar="N",
                   help="addresses kept in the emulator's decode cache and in its block cache, least "
                        f"recently used dropped (default {DEFAULT_CACHE_ENTRIES})")
    p.add_argument("--io-log", metavar="PATH",
                   help="write every guest IO operation, in order, one line each: "
                        "space (pio/mmio), port or address, r/w, size, value")
    p.add_argument("--vms", type=_vm_count, default=1, metavar="N",
                   help="run N copies of the guest at once, one vCPU thread each, sharing the block "
                        "table (fig5, fig6); serial lines are prefixed vmN| or go to PATH.vmN, "
                        "and --io-log goes to PATH.vmN")
    p.add_argument("--exit-code", choices=["plain", "qemu"], default="plain",
                   help="plain: status v; qemu: (v << 1) | 1, as QEMU's isa-debug-exit")
    return p


def read_guest(path: str) -> bytes:
    if os.path.isdir(path):
        raise UsageError(f"guest {path} is a directory; give the path of a flat binary image")
    try:
        with open(path, "rb") as f:
            data = f.read(layout.GUEST_MAX_SIZE + 1)
    except FileNotFoundError:
        raise UsageError(f"guest {path} does not exist; build guests with scripts/build_guests.py") from None
    except PermissionError:
        raise UsageError(f"guest {path} is not readable: check its permissions") from None
    except OSError as e:
        raise UsageError(f"cannot read guest {path}: {e.strerror}") from None
    if not data:
        raise UsageError(f"guest {path} is empty")
    if len(data) > layout.GUEST_MAX_SIZE:
        raise UsageError(f"guest {path} is larger than the {layout.GUEST_MAX_SIZE} bytes that fit "
                         f"between {layout.GUEST_LOAD_ADDR:#x} and {layout.CONV_RAM_END - 1:#x}")
    return data


def format_summary(stats: dict) -> str:
    ex = stats["exits"]
    lines = [f"pykvmm: {stats['guest']}: {stats['end']}, status {stats['exit_status']}, "
             f"{stats['wall_s']:.3f} s",
             "  exits: " + ", ".join(f"{k} {v}" for k, v in ex.items() if v),
             f"  io ops: {stats['io_ops']['total']} "
             + " ".join(f"{p}:{n}" for p, n in list(stats["io_ops"]["by_port"].items())[:12]),
             f"  serial bytes: {stats['serial_bytes']}"]
    ks = stats.get("kvm_stats") or {}
    if ks:
        lines.append(f"  kvm stats: exits {ks.get('exits', 0)}, io_exits {ks.get('io_exits', 0)}, "
                     f"mmio_exits {ks.get('mmio_exits', 0)}, halt_exits {ks.get('halt_exits', 0)}")
    co = stats["coalesce"]
    lines.append("  coalesce: " + ", ".join(f"{k} {v}" for k, v in co.items() if not isinstance(v, dict)))
    if co.get("stops"):
        lines.append("  emulation stops: " + ", ".join(f"{k} {v}" for k, v in co["stops"].items()))
    cal = co.get("calibration")
    if cal:
        lines.append(f"  calibration{' (cached)' if cal.get('cached') else ''}: exit {cal['exit_us']} us, "
                     f"native {cal['native_ns_per_insn']} ns/insn, emulated {cal['emulated_ns_per_insn']} "
                     f"ns/insn, compile {cal.get('compile_us', '?')} us/block -> extent {cal['extent']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.extent is None:
        args.extent = command_line_extent(args.coalesce)
    if args.warmup is None:
        args.warmup = COMMAND_LINE_WARMUP
    machine = None
    io_log = None
    try:
        image = read_guest(args.guest)
        firmware, kind = (None, "builtin") if args.no_firmware else read_firmware(args.bios)
        config = MachineConfig(mem_mib=args.mem, serial=args.serial, serial2=args.serial2,
                               debugcon=args.debugcon, exit_code=args.exit_code,
                               firmware=firmware, firmware_kind=kind)
        if args.vms > 1:
            return _run_many(args, image, config)
        machine = Machine(config)
        machine.load_guest(image)
        if args.io_log:
            io_log = IoLog(args.io_log)
            io_log.attach(machine)
        if args.coalesce == KVM_RING:
            machine.ring = CoalescedRing(machine)
        elif args.coalesce != OFF:
            machine.engine = CoalescingEngine(machine, args.coalesce, extent=args.extent,
                                              hash_mode=args.hash_mode, literal=args.literal,
                                              table_size=args.table_size, warmup=args.warmup)
            machine.engine.emu.cache_limit = args.decode_cache
        result = machine.run(timeout=args.timeout)
        if result.exit_status == STATUS_FAULT and result.detail:
            print(result.detail, file=sys.stderr)
        if args.stats or args.stats_json:
            stats = {"guest": args.guest}
            stats.update(machine.stats(result))
            if machine.ring is not None:
                stats["coalesce"] = machine.ring.stats()
            if args.stats:
                print(format_summary(stats), file=sys.stderr)
            if args.stats_json:
                try:
                    with open(args.stats_json, "w") as f:
                        json.dump(stats, f, indent=1)
                        f.write("\n")
                except OSError as e:
                    print(f"pykvmm: error: cannot write --stats-json {args.stats_json}: {e.strerror}",
                          file=sys.stderr)
                    return STATUS_USAGE
        return result.exit_status
    except UsageError as e:
        print(f"pykvmm: error: {e}", file=sys.stderr)
        return STATUS_USAGE
    except (KvmError, GuestFault, PykvmmError) as e:
        print(f"pykvmm: {e}", file=sys.stderr)
        return STATUS_FAULT
    finally:
        if io_log is not None:
            io_log.close()
        if machine is not None:
            machine.close()
