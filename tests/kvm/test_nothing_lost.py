"""Nothing lost (issue 8, section 5): serial and debug-console output written to a file, and the
--io-log, are complete and flushed on every ending: debug-exit, halt, fault, timeout, SIGINT and
SIGTERM at random moments.

The guest prints a counter sequence ("0000\\n0001\\n..." in hex) to COM1 and to the debug console,
so the file must be exactly a prefix of that sequence, and as long as the number of bytes the
guest wrote (the stats JSON's serial_bytes/debugcon_bytes): every byte written before the stop
is there, and nothing else.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest

from .helpers import ROOT, assemble

pytestmark = pytest.mark.kvm

COUNTER = """
        xor bx, bx
    next:
        mov cx, 4
    digit:
        rol bx, 4
        mov al, bl
        and al, 0x0f
        add al, '0'
        cmp al, '9'
        jbe put
        add al, 7
    put:
        call putc
        loop digit
        mov al, 10
        call putc
        inc bx
        {after_line}
        jmp next
    putc:
        push ax
        mov dx, 0x3fd
    poll:
        in al, dx
        test al, 0x20
        jz poll
        pop ax
        mov dx, 0x3f8
        out dx, al
        mov dx, 0x402
        out dx, al
        ret
"""


def expected(n_bytes: int) -> bytes:
    out = bytearray()
    n = 0
    while len(out) < n_bytes:
        out += b"%04X\n" % (n & 0xFFFF)
        n += 1
    return bytes(out[:n_bytes])


def _guest(tmp_path, after_line: str = "") -> str:
    g = tmp_path / "counter.bin"
    g.write_bytes(assemble(COUNTER.format(after_line=after_line)))
    return str(g)


def _args(tmp_path, guest, mode, *extra):
    return [sys.executable, "-m", "pykvmm", guest, "--coalesce", mode,
            "--serial", f"file:{tmp_path / 'serial.txt'}", "--debugcon", str(tmp_path / "debugcon.txt"),
            "--io-log", str(tmp_path / "io.log"), "--stats-json", str(tmp_path / "s.json"), *extra]


def _check_complete(tmp_path) -> dict:
    s = json.loads((tmp_path / "s.json").read_text())
    serial = (tmp_path / "serial.txt").read_bytes()
    debugcon = (tmp_path / "debugcon.txt").read_bytes()
    assert len(serial) == s["serial_bytes"], (len(serial), s["serial_bytes"])
    assert len(debugcon) == s["debugcon_bytes"], (len(debugcon), s["debugcon_bytes"])
    assert serial == expected(len(serial))
    # The guest writes each byte to COM1 and then to the debug console: a stop may fall between.
    assert serial[:len(debugcon)] == debugcon and len(serial) - len(debugcon) in (0, 1)
    lines = (tmp_path / "io.log").read_text().splitlines()
    assert len(lines) == s["io_ops"]["total"], (len(lines), s["io_ops"]["total"])
    assert sum(1 for ln in lines if ln.startswith("pio 0x402 w 1 ")) == len(debugcon)
    return s


@pytest.mark.parametrize("mode", ["off", "fig5", "trace"])
@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_at_a_random_moment_loses_nothing(tmp_path, mode, sig, status):
    rng = random.Random(f"{mode}-{sig}")
    for _ in range(2):
        delay = rng.uniform(0.6, 2.0)  # past start-up (about 0.5 s), into the printing
        p = subprocess.Popen(_args(tmp_path, _guest(tmp_path), mode), cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
        assert p.returncode == status, (delay, err)
        s = _check_complete(tmp_path)
        assert s["end"] == "interrupt"
        assert s["serial_bytes"] > 0, f"stopped at {delay:.2f} s before the guest printed"


@pytest.mark.parametrize("mode", ["off", "fig5"])
@pytest.mark.parametrize("ending,after_line,extra,status", [
    ("debug-exit", "cmp bx, 3000\njne next\nmov al, 9\nout 0xf4, al", (), 9),
    ("halt", "cmp bx, 3000\njne next\ncli\nhlt", (), 0),
    ("error", "cmp bx, 3000\njne next\ndaa", (), 3),
    ("timeout", "", ("--timeout", "1"), 124),
])
def test_every_ending_flushes(tmp_path, mode, ending, after_line, extra, status):
    r = subprocess.run(_args(tmp_path, _guest(tmp_path, after_line), mode, *extra), cwd=ROOT,
                       capture_output=True, timeout=60)
    if ending == "error" and r.returncode == 0:
        pytest.skip("this KVM runs DAA natively")
    assert r.returncode == status, r.stderr
    s = _check_complete(tmp_path)
    assert s["end"] == ending
    if ending != "timeout":
        assert s["serial_bytes"] == 3000 * 5


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_during_start_up_is_quiet(tmp_path, sig, status):
    """A stop while pykvmm is still loading or building the VM: the same status as during the
    run, no traceback, and the output file holds exactly what the guest wrote (maybe nothing)."""
    guest = _guest(tmp_path)
    for delay in (0.15, 0.25, 0.35, 0.45):
        p = subprocess.Popen(_args(tmp_path, guest, "fig5"), cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        time.sleep(delay)
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
        assert p.returncode == status, (delay, err)
        assert b"Traceback" not in err, (delay, err)
        serial = tmp_path / "serial.txt"
        if serial.exists():
            assert serial.read_bytes() == expected(len(serial.read_bytes()))


def test_a_signal_recorded_during_start_up_stops_the_run_before_the_guest(tmp_path):
    """The first SIGTERM during start-up is only recorded (early_stop): Machine.run must honour
    it at once, with SIGTERM's status and no guest output, rather than run the guest forever."""
    from pykvmm import early_stop
    from pykvmm.machine.machine import Machine, MachineConfig

    guest = (tmp_path / "counter.bin")
    _guest(tmp_path)
    out = tmp_path / "serial.out"
    early_stop.received[:] = [signal.SIGTERM]
    try:
        with Machine(MachineConfig(serial=f"file:{out}", serial_input=False)) as m:
            m.load_guest(guest.read_bytes())
            r = m.run(timeout=20)
    finally:
        early_stop.received.clear()
    assert (r.end, r.exit_status) == ("interrupt", 143)
    assert out.read_bytes() == b""
