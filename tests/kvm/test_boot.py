"""Booting guests under KVM: output, exit statuses, endings and fault reports."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pykvmm.machine.machine import Machine, MachineConfig

from .helpers import GUESTS, ROOT, assemble, pykvmm

pytestmark = pytest.mark.kvm


def expected_uart_spin_text() -> bytes:
    """The text uart_spin.asm is specified to print (its header comment), built independently."""
    lines = [b"pykvmm uart_spin: 1040 lines of 64 bytes through a polled 16550\n"]
    for n in range(1040):
        start = n % 94
        pattern = bytes(0x21 + (start + i) % 94 for i in range(52))
        lines.append(b"line %05d " % n + pattern + b"\n")
    return b"".join(lines)


def test_uart_spin_prints_its_text_and_exits_0(tmp_path):
    out = tmp_path / "serial.txt"
    stats = tmp_path / "stats.json"
    r = pykvmm(str(GUESTS / "uart_spin.bin"), "--no-firmware", "--coalesce", "off",
               "--serial", f"file:{out}", "--stats-json", str(stats))
    assert r.returncode == 0, r.stderr
    text = out.read_bytes()
    assert len(text) >= 64 * 1024
    assert text == expected_uart_spin_text()
    s = json.loads(stats.read_text())
    assert s["end"] == "debug-exit" and s["exit_status"] == 0
    assert s["serial_bytes"] == len(text)
    # Uncoalesced, every printed byte costs one LSR read and one THR write.
    assert s["io_ops"]["by_port"]["0x3f8"] == len(text) + 1  # +1: the divisor-latch write
    assert s["exits"]["io"] == s["io_ops"]["total"]


def test_uart_spin_to_stdout_after_the_firmware():
    r = pykvmm(str(GUESTS / "uart_spin.bin"))
    assert r.returncode == 0
    assert r.stdout == expected_uart_spin_text()


def test_stats_json_schema(tmp_path):
    stats = tmp_path / "s.json"
    r = pykvmm(str(GUESTS / "out_loop.bin"), "--serial", "null", "--coalesce", "off",
               "--stats-json", str(stats))
    assert r.returncode == 0, r.stderr
    s = json.loads(stats.read_text())
    for key in ("guest", "coalesce", "end", "exit_status", "wall_s", "exits", "kvm_stats", "io_ops",
                "serial_bytes", "final_regs"):
        assert key in s
    assert s["coalesce"] == {"policy": "off"}
    for key in ("total", "io", "mmio", "hlt", "intr"):
        assert key in s["exits"]
    assert set(s["io_ops"]) >= {"total", "by_port"}
    for reg in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "rip", "rflags", "cs", "ds",
                "es", "ss", "fs", "gs"):
        assert reg in s["final_regs"]
    assert "exits" in s["kvm_stats"] and "mmio_exits" in s["kvm_stats"]


def test_debug_exit_value_is_the_status():
    code = assemble("mov al, 42\nout 0xf4, al\nhlt")
    with Machine(MachineConfig(serial="null")) as m:
        m.load_guest(code)
        r = m.run(timeout=10)
        assert (r.end, r.exit_status) == ("debug-exit", 42)
        # On this host RIP is already past the OUT at an OUT exit.
        assert m.final_regs()["rip"] in (0x7C04, 0x7C02)


def test_exit_code_qemu_maps_the_value(tmp_path):
    g = tmp_path / "g.bin"
    g.write_bytes(assemble("mov al, 2\nout 0xf4, al\nhlt"))
    assert pykvmm(str(g), "--exit-code", "qemu").returncode == 5


def test_entry_contract_registers():
    # Store the entry registers where the test can read them, then stop.
    code = assemble("""
        mov [0x500], sp
        pushf
        pop word [0x502]
        mov [0x504], cs
        mov [0x506], ds
        mov [0x508], ss
        mov [0x50a], es
        call here
    here:
        pop word [0x50c]
        xor al, al
        out 0xf4, al
    """)
    with Machine(MachineConfig(serial="null")) as m:
        m.load_guest(code)
        assert m.run(timeout=10).end == "debug-exit"
        words = [int.from_bytes(m.mem.read(0x500 + 2 * i, 2), "little") for i in range(7)]
    sp, flags, cs, ds, ss, es, here = words
    assert sp == 0x7C00 and cs == ds == ss == es == 0
    assert flags & 0x0200 == 0  # IF off
    assert flags & 0x0002  # the always-one bit
    assert 0x7C00 < here < 0x7C40


def test_halt_with_interrupts_off_ends_with_0():
    r = pykvmm_snippet("cli\nhlt")
    assert r.returncode == 0, r.stderr


def pykvmm_snippet(src, *args, tmp=None, **kw):
    import tempfile
    d = tmp or tempfile.mkdtemp()
    g = os.path.join(d, "g.bin")
    with open(g, "wb") as f:
        f.write(assemble(src))
    return pykvmm(g, *args, **kw)


@pytest.mark.parametrize("src", ["jmp $", "sti\njmp $", "int 0x80"], ids=["spin", "spin-sti", "int80"])
def test_timeout_stops_a_guest_that_never_exits(src):
    # On this host a real-mode INT n with n >= 0x80 hangs inside KVM_RUN until a signal arrives.
    t = time.monotonic()
    r = pykvmm_snippet(src, "--timeout", "0.5", timeout=30)
    assert r.returncode == 124, r.stderr
    assert time.monotonic() - t < 15


def _fifo_on_one_cpu():
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))


@pytest.mark.parametrize("src", ["jmp $", "int 0x80"], ids=["spin", "int80"])
def test_timeout_stops_a_spinning_guest_under_a_real_time_policy_on_one_cpu(src):
    # kicker.py: under SCHED_FIFO the kicker thread, of the same priority, could never preempt a
    # vCPU spinning in the guest on the only CPU, and the run went on until killed.
    probe = subprocess.run([sys.executable, "-c", "import os; os.sched_setscheduler(0, "
                            "os.SCHED_FIFO, os.sched_param(10))"], capture_output=True)
    if probe.returncode != 0:
        why = "needs the right to use SCHED_FIFO (root, or RLIMIT_RTPRIO)"
        if os.environ.get("PYKVMM_REQUIRE_KVM") == "1":
            pytest.fail(f"PYKVMM_REQUIRE_KVM=1 but this KVM test {why}")
        pytest.skip(why)
    t = time.monotonic()
    r = pykvmm_snippet(src, "--no-firmware", "--timeout", "0.5", timeout=30,
                       preexec_fn=_fifo_on_one_cpu)
    assert r.returncode == 124, r.stderr
    assert time.monotonic() - t < 10
    assert b"warning" not in r.stderr


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_a_spinning_guest(tmp_path, sig, status):
    g = tmp_path / "g.bin"
    g.write_bytes(assemble("jmp $"))
    p = subprocess.Popen([sys.executable, "-m", "pykvmm", str(g), "--stats-json", str(tmp_path / "s.json")],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    p.send_signal(sig)
    _, err = p.communicate(timeout=20)
    assert p.returncode == status, err
    assert json.loads((tmp_path / "s.json").read_text())["end"] == "interrupt"


def test_triple_fault_is_reported_with_status_3(tmp_path):
    # In protected mode with an empty IDT, any exception escalates to a triple fault.
    r = pykvmm_snippet("""
        cli
        lidt [idt]
        mov eax, cr0
        or al, 1
        mov cr0, eax
        ud2
    idt: dw 0
        dd 0
    """, "--stats-json", str(tmp_path / "s.json"))
    assert r.returncode == 3
    err = r.stderr.decode()
    assert "guest fault: shutdown" in err and "0000:7c" in err and "rip=" in err
    assert json.loads((tmp_path / "s.json").read_text())["end"] == "shutdown"


def test_internal_emulation_error_is_reported_with_status_3():
    # DAA is one of the instructions this host's in-kernel emulator cannot run.
    r = pykvmm_snippet("daa")
    if r.returncode == 0:
        pytest.skip("this KVM executes DAA natively (hardware backend)")
    assert r.returncode == 3
    err = r.stderr.decode()
    assert "KVM internal error" in err and "daa" in err


def test_serial_output_is_complete_on_timeout(tmp_path):
    out = tmp_path / "o.txt"
    r = pykvmm_snippet("""
        mov dx, 0x3f8
        mov cx, 1000
    again:
        mov al, 'x'
        out dx, al
        loop again
        jmp $
    """, "--serial", f"file:{out}", "--timeout", "0.5")
    assert r.returncode == 124
    assert out.read_bytes() == b"x" * 1000
