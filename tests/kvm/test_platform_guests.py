"""The PC platform guests and pykvmm's BIOS under KVM, through the command line.

Expected values come from the datasheets (8254 PIT clock, 8259A read-back values), the BIOS
conventions the firmware documents (BDA layout, INT 1Ah tick rate) and the host clock; never from
a previous run of the guests.  Guests that program every device they use run both after pykvmm's
BIOS (the default) and with ``--no-firmware``.
"""

from __future__ import annotations

import calendar
import json
import os
import pty
import re
import resource
import select
import subprocess
import sys
import time

import pytest

from .helpers import GUESTS, ROOT, assemble, pykvmm

pytestmark = pytest.mark.kvm

FIRMWARE = ROOT / "firmware" / "bios.bin"
# 8254 datasheet / IBM PC: counter 0 is clocked at 1.193182 MHz; a count of 0 means 65536.
PIT_HZ = 1_193_182 / 65536  # 18.2065 ticks per second
TICK_TOLERANCE = 2  # the "18 +-2": one tick of quantisation at each end, and some slack

BOTH = pytest.mark.parametrize("firmware", [[], ["--no-firmware"]], ids=["bios", "no-firmware"])
# Time- and input-driven guests must pass their own tolerance tests under every coalescing mode.
EVERY_POLICY = pytest.mark.parametrize("policy", ["off", "fig5", "fig6", "fig7", "trace"])
RUN_TIMEOUT = "30"  # seconds: every guest here finishes in a few


def run_guest(name: str, *args: str, tmp_path, **kw) -> tuple[subprocess.CompletedProcess, bytes, dict]:
    out = tmp_path / f"{name}.serial"
    stats = tmp_path / f"{name}.json"
    r = pykvmm(str(GUESTS / f"{name}.bin"), "--serial", f"file:{out}", "--stats-json", str(stats),
               "--timeout", RUN_TIMEOUT, *args, **kw)
    s = json.loads(stats.read_text()) if stats.exists() else {}
    return r, out.read_bytes() if out.exists() else b"", s


def run_snippet(source: str, *args: str, tmp_path) -> tuple[subprocess.CompletedProcess, bytes]:
    guest = tmp_path / "snippet.bin"
    guest.write_bytes(assemble(source))
    out = tmp_path / "snippet.serial"
    r = pykvmm(str(guest), "--serial", f"file:{out}", "--timeout", RUN_TIMEOUT, *args)
    return r, out.read_bytes() if out.exists() else b""


# --- pit_tick ----------------------------------------------------------------------------------

@EVERY_POLICY
@BOTH
def test_pit_tick_counts_18_ticks_in_one_rtc_second(tmp_path, firmware, policy):
    r, text, s = run_guest("pit_tick", *firmware, "--coalesce", policy, tmp_path=tmp_path)
    assert r.returncode == 0, (r.stderr, text)
    m = re.fullmatch(rb"pit_tick: (\d\d) ticks in one RTC second\n", text)
    assert m, text
    assert abs(int(m.group(1)) - PIT_HZ) <= TICK_TOLERANCE
    # The ticks arrived as interrupts into a guest sleeping in HLT, not by polling.
    assert s["exits"]["hlt"] >= 18


def test_pit_tick_sleeps_between_ticks(tmp_path):
    """The issue: a guest waiting in STI;HLT for PIT ticks uses no host CPU between ticks."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r, text, _ = run_guest("pit_tick", tmp_path=tmp_path)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert r.returncode == 0, r.stderr
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # The guest waits 1 to 2 s of RTC time; Python's start-up costs a few tenths of CPU time.  A
    # host thread spinning through the wait would use about as much CPU as wall time.
    assert wall >= 1.0
    assert cpu < 0.5 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s"


# --- pic_init ----------------------------------------------------------------------------------

@EVERY_POLICY
@BOTH
def test_pic_init_reads_back_the_datasheet_values(tmp_path, firmware, policy):
    # The guest checks each value against the 8259A datasheet itself (its header lists them);
    # a mismatch ends with the check's number as the status and the value read on COM1.
    r, text, _ = run_guest("pic_init", *firmware, "--coalesce", policy, tmp_path=tmp_path)
    assert (r.returncode, text) == (0, b"pic_init: ok\n"), r.stderr


# --- cmos_clock --------------------------------------------------------------------------------

@EVERY_POLICY
@BOTH
def test_cmos_clock_prints_the_host_utc_time(tmp_path, firmware, policy):
    before = time.time()
    r, text, _ = run_guest("cmos_clock", *firmware, "--coalesce", policy, tmp_path=tmp_path)
    after = time.time()
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(rb"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\n", text)
    assert m, text
    guest = calendar.timegm(tuple(int(g) for g in m.groups()) + (0, 0, 0))
    # The RTC shows whole seconds, so it may read up to 1 s behind the host's fractional clock.
    assert before - 2 <= guest <= after + 2, (text, time.strftime("%F %T", time.gmtime(before)))


# --- bios_hello --------------------------------------------------------------------------------

BIOS_HELLO_TEXT = b"Hello from the BIOS: INT 10h AH=0Eh\r\n"


def test_bios_hello_prints_through_int10(tmp_path):
    r, text, s = run_guest("bios_hello", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert text == BIOS_HELLO_TEXT
    assert s["serial_bytes"] == len(BIOS_HELLO_TEXT)


def test_bios_hello_under_bios_option_with_pykvmm_firmware(tmp_path):
    # --bios lays memory out for a foreign firmware (0xC0000-0xFFFFF RAM, image at the top); the
    # pykvmm BIOS must run there too.
    r, text, _ = run_guest("bios_hello", "--bios", str(FIRMWARE), tmp_path=tmp_path)
    assert (r.returncode, text) == (0, BIOS_HELLO_TEXT), r.stderr


# --- echo --------------------------------------------------------------------------------------

ECHO_BANNER = b"echo: type lines; a line quit ends\r\n"


@EVERY_POLICY
def test_echo_piped_input(policy):
    """The issue's test: `printf ... | pykvmm echo.bin`, the input all there from the start.

    Regression: host input fed into COM1 before the BIOS enabled the FIFOs was lost (enabling
    them clears the receiver, 16550 datasheet FCR bit 0); the machine now holds input until the
    guest listens (reads RBR/LSR or sets IER.ERBFI).
    """
    lines = [b"hello\n", b"quitter\n", b" quit\n", b"qui\n", b"quit\n", b"not echoed\n"]
    r = pykvmm(str(GUESTS / "echo.bin"), "--serial", "stdio", "--timeout", RUN_TIMEOUT,
               "--coalesce", policy, input=b"".join(lines))
    assert r.returncode == 0, r.stderr
    # Echoed byte for byte up to the line "quit"; what follows it is never read.
    assert r.stdout == ECHO_BANNER + b"".join(lines[:5])


def _read_pty(fd: int, until: bytes | None, deadline: float) -> bytes:
    """Read the pty master until ``until`` shows (None: until the slave side is closed)."""
    got = b""
    while time.monotonic() < deadline and (until is None or until not in got):
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every slave descriptor is closed (pykvmm exited)
            break
        if not chunk:
            break
        got += chunk
    return got


def test_echo_on_a_terminal():
    """A person at a terminal: pykvmm puts it in raw mode, and Enter sends CR."""
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "pykvmm", str(GUESTS / "echo.bin"), "--serial", "stdio",
                          "--timeout", RUN_TIMEOUT], cwd=ROOT, stdin=slave, stdout=slave,
                         stderr=subprocess.PIPE)
    os.close(slave)
    try:
        deadline = time.monotonic() + float(RUN_TIMEOUT) + 10
        # On a terminal the output is line buffered, so the banner shows as soon as it is written;
        # typing only then also means the terminal is already in raw mode.
        out = _read_pty(master, ECHO_BANNER, deadline)
        assert out == ECHO_BANNER
        for line in (b"one\r", b"quit!\r", b"quit\r"):
            os.write(master, line)
        out += _read_pty(master, None, deadline)
        p.wait(timeout=30)
        assert p.returncode == 0, p.stderr.read()
        assert out == ECHO_BANNER + b"one\rquit!\rquit\r"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
        os.close(master)


# --- mmio_uart ---------------------------------------------------------------------------------

def expected_mmio_uart_text() -> bytes:
    """The text mmio_uart.asm's header specifies, built independently."""
    return (b"pykvmm mmio_uart: polled output through the 16550 at 0xB0000\n"
            + b"".join(b"mmio line %02d: the quick brown fox jumps over the lazy dog\n" % n
                       for n in range(100)))


@BOTH
def test_mmio_uart_prints_through_serial2(tmp_path, firmware):
    out2 = tmp_path / "serial2.txt"
    r, com1, s = run_guest("mmio_uart", *firmware, "--serial2", f"file:{out2}", "--coalesce", "off",
                           tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    text = out2.read_bytes()
    assert text == expected_mmio_uart_text()
    assert com1 == b""
    # Polled and uncoalesced: per byte one LSR read and one THR write, plus the five
    # initialisation writes (LCR, DLL, DLM, LCR, FCR); each is a KVM_EXIT_MMIO.
    assert s["exits"]["mmio"] == 2 * len(text) + 5


# --- the BIOS itself, probed by small snippets -------------------------------------------------

ENTRY_CONTRACT_PROBE = """
    ; Status bits: 1 SP, 2 FLAGS, 4 a segment register, 8 a general register differs from the
    ; entry contract (CS=DS=ES=FS=GS=SS=0, SP=7C00h, FLAGS=0002h, general registers 0).
    mov [0x500], sp
    pushf
    pop word [0x502]
    mov [0x504], eax
    mov [0x508], ebx
    xor bl, bl
    cmp word [0x500], 0x7C00
    je sp_ok
    or bl, 1
sp_ok:
    cmp word [0x502], 0x0002
    je flags_ok
    or bl, 2
flags_ok:
    mov ax, cs
    mov dx, ds
    or ax, dx
    mov dx, es
    or ax, dx
    mov dx, ss
    or ax, dx
    mov dx, fs
    or ax, dx
    mov dx, gs
    or ax, dx
    jz segs_ok
    or bl, 4
segs_ok:
    mov eax, [0x504]
    or eax, [0x508]
    or eax, ecx
    or eax, edx
    or eax, esi
    or eax, edi
    or eax, ebp
    jz regs_ok
    or bl, 8
regs_ok:
    mov al, bl
    out 0xf4, al
"""


@BOTH
def test_firmware_enters_the_guest_with_the_entry_contract(tmp_path, firmware):
    # With --no-firmware pykvmm sets the same registers itself: the two entries must not differ.
    r, _ = run_snippet(ENTRY_CONTRACT_PROBE, *firmware, tmp_path=tmp_path)
    assert r.returncode == 0, f"entry contract status {r.returncode:#x}: {r.stderr!r}"


BDA_AND_IVT_PROBE = """
    ; Status: 1 COM1 base, 2 equipment word serial count, 3 base memory, 4 vector 08h,
    ; 5 vector 10h, 6 vector 16h, 7 vector 1Ah not in the BIOS segment, 8 master IMR,
    ; 9 slave IMR, 10 keyboard ring pointers.
    xor ax, ax
    mov ds, ax
    mov al, 1
    cmp word [0x400], 0x3F8
    jne done
    mov al, 2
    mov bx, [0x410]
    shr bx, 9
    and bx, 7
    cmp bx, 1
    jne done
    mov al, 3
    cmp word [0x413], 640
    jne done
    mov al, 4
    cmp word [0x08 * 4 + 2], 0xF000
    jne done
    mov al, 5
    cmp word [0x10 * 4 + 2], 0xF000
    jne done
    mov al, 6
    cmp word [0x16 * 4 + 2], 0xF000
    jne done
    mov al, 7
    cmp word [0x1A * 4 + 2], 0xF000
    jne done
    in al, 0x21
    test al, 0x01           ; IRQ0 must be open
    mov al, 8
    jnz done
    in al, 0xA1
    cmp al, 0xFF
    mov al, 9
    jne done
    mov al, 10
    mov bx, [0x41A]
    cmp bx, [0x41C]
    jne done
    cmp bx, 0x1E
    jne done
    xor al, al
done:
    out 0xf4, al
"""


def test_firmware_sets_up_the_bda_ivt_and_masks(tmp_path):
    r, _ = run_snippet(BDA_AND_IVT_PROBE, tmp_path=tmp_path)
    assert r.returncode == 0, f"check {r.returncode} failed: {r.stderr!r}"


FIRMWARE_TICK_PROBE = """
    ; INT 1Ah AH=00h ticks across one RTC second (timed with the RTC, as pit_tick does); the
    ; status is the number of ticks, 255 if the RTC did not move within 64 ticks.
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7C00
    sti
    call wait_second
    xor ah, ah
    int 0x1A
    mov bp, dx
    call wait_second
    xor ah, ah
    int 0x1A
    sub dx, bp
    mov al, dl
    out 0xf4, al
wait_second:
    call seconds
    mov bl, al
    mov cx, 64
tick:
    hlt
    call seconds
    cmp al, bl
    jne changed
    loop tick
    mov al, 255
    out 0xf4, al
changed:
    ret
seconds:
    mov al, 0x0A
    out 0x70, al
    in al, 0x71
    test al, 0x80
    jnz seconds             ; UIP: the registers are being updated
    mov al, 0x00
    out 0x70, al
    in al, 0x71
    ret
"""


def test_firmware_ticks_at_18_2_hz(tmp_path):
    r, _ = run_snippet(FIRMWARE_TICK_PROBE, tmp_path=tmp_path)
    assert abs(r.returncode - PIT_HZ) <= TICK_TOLERANCE, r.stderr


SERVICES_PROBE = """
    ; Status: 1 INT 1Ah AH=01h/00h round trip, 2 INT 1Ah unknown function without CF,
    ; 3 INT 16h AH=01h with no input did not set ZF, 4 INT 10h AH=0Eh changed a register.
    ; IF stays 0, so no tick moves the count between the set and the read.
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7C00
    mov ah, 0x01
    mov cx, 0x0012
    mov dx, 0x3456
    int 0x1A
    xor cx, cx
    xor dx, dx
    mov ah, 0x00
    int 0x1A
    cmp cx, 0x0012
    jne f1
    cmp dx, 0x3456
    jne f1
    mov ah, 0x7F
    clc
    int 0x1A
    jnc f2
    mov ah, 0x01
    int 0x16
    jnz f3
    mov ax, 0x0E00 | 'K'
    mov bx, 0x1234
    mov cx, 0x5678
    mov dx, 0x9ABC
    mov si, 0xDEF0
    mov di, 0x0FED
    mov bp, 0xCBA9
    int 0x10
    cmp ax, 0x0E00 | 'K'
    jne f4
    cmp bx, 0x1234
    jne f4
    cmp cx, 0x5678
    jne f4
    cmp dx, 0x9ABC
    jne f4
    cmp si, 0xDEF0
    jne f4
    cmp di, 0x0FED
    jne f4
    cmp bp, 0xCBA9
    jne f4
    cmp sp, 0x7C00
    jne f4
    xor al, al
    jmp done
f1: mov al, 1
    jmp done
f2: mov al, 2
    jmp done
f3: mov al, 3
    jmp done
f4: mov al, 4
done:
    out 0xf4, al
"""


def test_firmware_services(tmp_path):
    r, text = run_snippet(SERVICES_PROBE, "--serial", "null", tmp_path=tmp_path)
    assert r.returncode == 0, f"check {r.returncode} failed: {r.stderr!r}"
    r, text = run_snippet(SERVICES_PROBE, tmp_path=tmp_path)
    assert (r.returncode, text) == (0, b"K")


SPURIOUS_PROBE = """
    ; IRQ0 is put in service by an OCW3 poll (IF stays 0), then the CPU's view of a spurious
    ; IRQ7 (vector 0Fh with ISR bit 7 clear) is simulated with INT 0Fh: the handler must not send
    ; an EOI, which would end IRQ0.  A spurious IRQ15 (INT 77h with slave ISR bit 7 clear) must
    ; EOI the master only.  Status: 1 IRQ0 not in service, 2 INT 0Fh sent an EOI, 3 INT 77h did
    ; not EOI the master, 4 the PIT's OUT0 never rose.
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7C00
    mov al, 0xFE            ; only IRQ0 open
    out 0x21, al
    mov al, 0x10            ; PIT counter 0, LSB, mode 0: OUT0 rises when the count of 2 ends
    out 0x43, al
    mov al, 2
    out 0x40, al
    mov cx, 0xFFFF
wait_out:
    mov al, 0xE2            ; read-back: status of counter 0
    out 0x43, al
    in al, 0x40
    test al, 0x80
    jnz risen
    loop wait_out
    mov al, 4
    jmp done
risen:
    mov al, 0x0C            ; OCW3 poll: acknowledges IRQ0
    out 0x20, al
    in al, 0x20
    mov al, 0x0B
    out 0x20, al
    in al, 0x20
    cmp al, 0x01
    mov al, 1
    jne done
    int 0x0F
    mov al, 0x0B
    out 0x20, al
    in al, 0x20
    cmp al, 0x01
    mov al, 2
    jne done
    int 0x77
    mov al, 0x0B
    out 0x20, al
    in al, 0x20
    cmp al, 0x00
    mov al, 3
    jne done
    xor al, al
done:
    out 0xf4, al
"""


def test_firmware_spurious_irq7_and_irq15_handlers(tmp_path):
    r, _ = run_snippet(SPURIOUS_PROBE, tmp_path=tmp_path)
    assert r.returncode == 0, f"check {r.returncode} failed: {r.stderr!r}"
