"""Every user mistake: one line on stderr, status 2, no traceback. Messages are pinned."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pykvmm import cli
from pykvmm.kvm import system

ROOT = Path(__file__).resolve().parents[3]
GUEST = str(ROOT / "guests" / "uart_spin.bin")


def run_cli(capsys, *argv):
    try:
        status = cli.main(list(argv))
    except SystemExit as e:  # argparse exits through SystemExit
        status = e.code
    err = capsys.readouterr().err
    return status, err


def assert_one_line(err):
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_missing_guest_file(capsys, tmp_path):
    status, err = run_cli(capsys, str(tmp_path / "nope.bin"))
    assert status == 2
    assert_one_line(err)
    assert "does not exist; build guests with scripts/build_guests.py" in err


def test_empty_guest_file(capsys, tmp_path):
    p = tmp_path / "empty.bin"
    p.write_bytes(b"")
    status, err = run_cli(capsys, str(p))
    assert status == 2 and f"guest {p} is empty" in err
    assert_one_line(err)


def test_guest_is_a_directory(capsys, tmp_path):
    status, err = run_cli(capsys, str(tmp_path))
    assert status == 2 and "is a directory; give the path of a flat binary image" in err
    assert_one_line(err)


def test_guest_too_large_for_conventional_memory(capsys, tmp_path):
    p = tmp_path / "big.bin"
    p.write_bytes(b"\x90" * (0xA0000 - 0x7C00 + 1))
    status, err = run_cli(capsys, str(p))
    assert status == 2 and "is larger than the 623616 bytes that fit between 0x7c00 and 0x9ffff" in err
    assert_one_line(err)


def test_unreadable_guest(capsys, tmp_path, monkeypatch):
    p = tmp_path / "secret.bin"
    p.write_bytes(b"\xf4")
    real_open = open

    def deny(path, *a, **k):
        if str(path) == str(p):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", deny)
    status, err = run_cli(capsys, str(p))
    assert status == 2 and "is not readable: check its permissions" in err


@pytest.mark.parametrize("argv,message", [
    (["--mem", "0"], "argument --mem: must be between 2 and 3072 MiB, not 0"),
    (["--mem", "100000"], "argument --mem: must be between 2 and 3072 MiB, not 100000"),
    (["--mem", "lots"], "argument --mem: must be a whole number of MiB, not 'lots'"),
    (["--timeout", "-1"], "argument --timeout: must be a positive number of seconds, not -1"),
    (["--timeout", "abc"], "argument --timeout: must be a number of seconds, not 'abc'"),
    (["--serial", "tcp:1234"], "argument --serial: must be stdio, null or file:PATH, not 'tcp:1234'"),
    (["--serial", "file:"], "argument --serial: must be stdio, null or file:PATH, not 'file:'"),
    (["--coalesce", "sometimes"], "argument --coalesce: invalid choice: 'sometimes'"),
    (["--exit-code", "bash"], "argument --exit-code: invalid choice: 'bash'"),
])
def test_invalid_option_values(capsys, argv, message):
    status, err = run_cli(capsys, GUEST, *argv)
    assert status == 2
    assert_one_line(err)
    assert message in err and "(see pykvmm --help)" in err


def test_kvm_device_missing(capsys, monkeypatch):
    monkeypatch.setenv("PYKVMM_KVM_DEVICE", "/nonexistent/kvm")
    status, err = run_cli(capsys, GUEST, "--serial", "null")
    assert status == 2
    assert_one_line(err)
    assert "KVM is not available on this host: /nonexistent/kvm does not exist" in err
    assert "modprobe kvm_intel or kvm_amd" in err


def test_kvm_permission_denied(capsys, monkeypatch):
    real_open = os.open

    def deny(path, *a, **k):
        if str(path) == "/dev/kvm":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", deny)
    status, err = run_cli(capsys, GUEST, "--serial", "null")
    assert status == 2
    assert_one_line(err)
    assert "run as root or add your user to the 'kvm' group" in err


def test_kvm_busy(capsys, monkeypatch):
    def busy(path, *a, **k):
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(system.os, "open", busy)
    status, err = run_cli(capsys, GUEST, "--serial", "null")
    assert status == 2 and "is busy" in err


def test_serial_file_in_missing_directory(tmp_path):
    from pykvmm.machine.sinks import open_sink
    from pykvmm.errors import UsageError

    with pytest.raises(UsageError, match="cannot open .* for writing"):
        open_sink(f"file:{tmp_path}/no/such/dir/out.txt")


def test_help_lists_every_option():
    out = subprocess.run([sys.executable, "-m", "pykvmm", "--help"], capture_output=True, text=True,
                         cwd=ROOT).stdout
    for opt in ("--serial", "--timeout", "--mem", "--stats", "--stats-json", "--coalesce", "--exit-code"):
        assert opt in out


def test_bios_image_missing(capsys, tmp_path):
    status, err = run_cli(capsys, GUEST, "--bios", str(tmp_path / "none.bin"))
    assert status == 2
    assert_one_line(err)
    assert f"--bios {tmp_path / 'none.bin'} does not exist; check the path" in err


def test_bios_image_of_the_wrong_size(capsys, tmp_path):
    p = tmp_path / "small.bin"
    p.write_bytes(b"\x90" * 1000)
    status, err = run_cli(capsys, GUEST, "--bios", str(p))
    assert status == 2
    assert_one_line(err)
    assert "is 1000 bytes; a firmware image must be 64, 128, 192 or 256 KiB" in err


def test_builtin_firmware_missing(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "FIRMWARE_IMAGE", tmp_path / "bios.bin")
    status, err = run_cli(capsys, GUEST)
    assert status == 2
    assert "does not exist; run scripts/build_guests.py, or pass --no-firmware" in err


def test_no_firmware_and_bios_exclude_each_other(capsys):
    status, err = run_cli(capsys, GUEST, "--no-firmware", "--bios", "x.bin")
    assert status == 2 and "not allowed with argument" in err


@pytest.mark.parametrize("value,message", [
    ("0", "argument --extent: must be a positive integer up to 10000 or auto, not 0"),
    ("-3", "argument --extent: must be a positive integer up to 10000 or auto, not -3"),
    ("abc", "argument --extent: must be a positive integer or auto, not 'abc'"),
])
def test_invalid_extent(capsys, value, message):
    status, err = run_cli(capsys, GUEST, "--extent", value)
    assert status == 2
    assert_one_line(err)
    assert message in err
