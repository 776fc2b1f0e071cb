"""The QEMU baseline: the same guest binary as a boot sector, under QEMU with KVM.

QEMU's SeaBIOS loads the 512-byte image from an IDE disk at 0000:7C00 (the floppy path times out
in SeaBIOS's floppy_wait_irq on this host, so the image is attached as a raw IDE disk).  The guest
ends by writing v to the isa-debug-exit device at port 0xF4, and QEMU exits with (v << 1) | 1.

QEMU's start-up (SeaBIOS, the disk probe) takes seconds, so the time per printed byte is
(wall(guest) - wall(empty)) / bytes, where ``empty`` is a boot sector that exits at once; both are
medians over the same number of runs, interleaved.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

QEMU_BINARY = "qemu-system-x86_64"
BOOT_SIGNATURE = b"\x55\xaa"
SECTOR = 512
# mov al, 0; out 0xF4, al; cli; hlt; jmp short hlt: exits with QEMU status (0 << 1) | 1.
EMPTY_CODE = bytes((0xB0, 0x00, 0xE6, 0xF4, 0xFA, 0xF4, 0xEB, 0xFD))
EMPTY_SECTOR = EMPTY_CODE + bytes(SECTOR - 2 - len(EMPTY_CODE)) + BOOT_SIGNATURE


def find_qemu(path: str | None = None) -> str | None:
    return shutil.which(path or QEMU_BINARY)


def is_boot_sector(image: bytes) -> bool:
    return len(image) == SECTOR and image[-2:] == BOOT_SIGNATURE


def qemu_command(qemu: str, disk: str, serial: str) -> list[str]:
    return [qemu, "-accel", "kvm", "-nodefaults", "-display", "none", "-snapshot",
            "-serial", f"file:{serial}",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-drive", f"format=raw,file={disk},if=ide"]


def run_qemu(qemu: str, image: bytes, timeout: float = 120.0) -> dict:
    """One QEMU run of a boot sector: wall time, exit status, the guest's debug-exit value."""
    with tempfile.TemporaryDirectory(prefix="pykvmm-qemu-") as d:
        disk, serial = os.path.join(d, "disk.img"), os.path.join(d, "serial.out")
        Path(disk).write_bytes(image)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(qemu_command(qemu, disk, serial), stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout)
            status, err = p.returncode, p.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired:
            status, err = None, f"timed out after {timeout:g} s"
        wall = time.perf_counter() - t0
        out = Path(serial).read_bytes() if os.path.exists(serial) else b""
    value = (status >> 1) if status is not None and status & 1 else None
    return {"wall_s": round(wall, 6), "status": status, "guest_exit_value": value,
            "printed_bytes": len(out), "stderr_tail": err.strip().splitlines()[-1:] if status != 1 else []}


def measure(qemu: str, image: bytes, repeats: int, timeout: float = 120.0, on_run=None) -> dict:
    """Median wall time of the guest and of the empty boot sector, and µs per printed byte."""
    guest_runs, empty_runs = [], []
    for _ in range(repeats):
        empty_runs.append(run_qemu(qemu, EMPTY_SECTOR, timeout))
        if on_run:
            on_run()
        guest_runs.append(run_qemu(qemu, image, timeout))
        if on_run:
            on_run()
    ok = all(r["guest_exit_value"] is not None for r in guest_runs + empty_runs)
    gw = [r["wall_s"] for r in guest_runs]
    ew = [r["wall_s"] for r in empty_runs]
    nbytes = guest_runs[-1]["printed_bytes"]
    net = statistics.median(gw) - statistics.median(ew)
    return {
        "ok": ok, "runs": guest_runs, "empty_runs": empty_runs,
        "wall_median_s": statistics.median(gw), "wall_min_s": min(gw),
        "startup_median_s": statistics.median(ew), "net_s": net, "printed_bytes": nbytes,
        "us_per_byte": net / nbytes * 1e6 if nbytes and ok else None,
        "command": " ".join(qemu_command(qemu, "DISK.img", "SERIAL.out")),
    }


# -- exit counts through QMP ----------------------------------------------------------------------
# QEMU (7.1+) reports KVM's binary statistics per vCPU with the QMP command query-stats.  QEMU
# exits as soon as the guest writes to isa-debug-exit, before anything can be asked, so the count
# runs leave that device out: the guest's final OUT to 0xF4 then goes nowhere and it stops in
# CLI; HLT.  The statistics are read once the output is complete and the exit count has settled,
# and the empty boot sector's count (SeaBIOS and the disk probe) is subtracted.

SETTLE_S = 0.3


def _qmp(sock_path: str, timeout: float):
    import json
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            s.connect(sock_path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    f = s.makefile("rwb")

    def call(cmd: str, **arguments):
        msg = {"execute": cmd}
        if arguments:
            msg["arguments"] = arguments
        f.write(json.dumps(msg).encode() + b"\n")
        f.flush()
        while True:
            line = f.readline()
            if not line:
                raise ConnectionError("QMP connection closed")
            reply = json.loads(line)
            if "return" in reply or "error" in reply:
                return reply

    json.loads(f.readline())  # the greeting
    call("qmp_capabilities")
    return s, call


def _vcpu_stats(call) -> dict:
    reply = call("query-stats", target="vcpu")
    out: dict[str, int] = {}
    for entry in reply.get("return", []):
        for st in entry.get("stats", []):
            if isinstance(st.get("value"), int):
                out[st["name"]] = out.get(st["name"], 0) + st["value"]
    return out


def count_exits_once(qemu: str, image: bytes, expected_bytes: int, timeout: float = 120.0) -> dict | None:
    """KVM's vCPU statistics after the guest has printed ``expected_bytes`` and gone quiet."""
    with tempfile.TemporaryDirectory(prefix="pykvmm-qemu-") as d:
        disk, serial, sock = (os.path.join(d, n) for n in ("disk.img", "serial.out", "qmp.sock"))
        Path(disk).write_bytes(image)
        cmd = [c for c in qemu_command(qemu, disk, serial)]
        i = cmd.index("-device")
        del cmd[i:i + 2]  # no isa-debug-exit: the guest halts instead of ending QEMU
        cmd += ["-qmp", f"unix:{sock},server=on,wait=off"]
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            s, call = _qmp(sock, 10.0)
            deadline = time.monotonic() + timeout
            last = None
            while time.monotonic() < deadline:
                time.sleep(SETTLE_S)
                size = os.path.getsize(serial) if os.path.exists(serial) else 0
                stats = _vcpu_stats(call)
                if not stats:
                    return None  # this QEMU has no query-stats for vCPUs
                if size >= expected_bytes and last is not None and stats.get("exits") == last.get("exits"):
                    call("quit")
                    s.close()
                    return stats
                last = stats
            return None
        except (OSError, ValueError, ConnectionError):
            return None
        finally:
            if p.poll() is None:
                p.kill()
            p.wait()


def count_exits(qemu: str, image: bytes, expected_bytes: int, timeout: float = 120.0) -> dict | None:
    """The guest's own exits under QEMU: its KVM statistics minus the empty boot sector's."""
    guest = count_exits_once(qemu, image, expected_bytes, timeout)
    empty = count_exits_once(qemu, EMPTY_SECTOR, 0, timeout)
    if guest is None or empty is None:
        return None
    keys = ("exits", "io_exits", "mmio_exits", "halt_exits", "signal_exits", "irq_exits",
            "insn_emulation")
    return {"guest": {k: guest.get(k, 0) for k in keys}, "empty": {k: empty.get(k, 0) for k in keys},
            "net": {k: guest.get(k, 0) - empty.get(k, 0) for k in keys}}
