"""Option values out of range or malformed (issue 8, section 3): one line on stderr, status 2, no
traceback, the message pinned.  test_cli_errors.py covers files, firmware and KVM itself."""

from pathlib import Path

import pytest

from pykvmm import cli

ROOT = Path(__file__).resolve().parents[3]
GUEST = str(ROOT / "guests" / "uart_spin.bin")


def run_cli(capsys, *argv):
    try:
        status = cli.main(list(argv))
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--extent", "0"], "argument --extent: must be a positive integer up to 10000 or auto, not 0"),
    (["--extent", "-3"], "argument --extent: must be a positive integer up to 10000 or auto, not -3"),
    (["--extent", "abc"], "argument --extent: must be a positive integer or auto, not 'abc'"),
    (["--extent", "10001"], "argument --extent: must be a positive integer up to 10000 or auto, not 10001"),
    (["--extent", "2.5"], "argument --extent: must be a positive integer or auto, not '2.5'"),
    (["--mem", "0"], "argument --mem: must be between 2 and 3072 MiB, not 0"),
    (["--mem", "100000"], "argument --mem: must be between 2 and 3072 MiB, not 100000"),
    (["--mem", "-1"], "argument --mem: must be between 2 and 3072 MiB, not -1"),
    (["--mem", "1.5"], "argument --mem: must be a whole number of MiB, not '1.5'"),
    (["--timeout", "0"], "argument --timeout: must be a positive number of seconds, not 0"),
    (["--timeout", "nan"], "argument --timeout: must be a positive number of seconds, not nan"),
    (["--timeout", "inf"], "argument --timeout: must be a positive number of seconds, not inf"),
    (["--coalesce", "fig9"], "argument --coalesce: invalid choice: 'fig9'"),
    (["--coalesce", ""], "argument --coalesce: invalid choice: ''"),
    (["--hash", "md5"], "argument --hash: invalid choice: 'md5'"),
    (["--warmup", "-1"], "argument --warmup: must be auto or between 0 and 1000000, not -1"),
    (["--warmup", "soon"], "argument --warmup: must be auto or a whole number of exits, not 'soon'"),
    (["--table-size", "0"], "argument --table-size: must be between 1 and 10000000, not 0"),
    (["--table-size", "many"], "argument --table-size: must be a positive integer, not 'many'"),
    (["--serial", ""], "argument --serial: must be stdio, null or file:PATH, not ''"),
    (["--serial", "file"], "argument --serial: must be stdio, null or file:PATH, not 'file'"),
    (["--serial", "stdout"], "argument --serial: must be stdio, null or file:PATH, not 'stdout'"),
    (["--serial2", "tcp:1"], "argument --serial2: must be stdio, null or file:PATH, not 'tcp:1'"),
    (["--serial2", "file:"], "argument --serial2: must be stdio, null or file:PATH, not 'file:'"),
    (["--debugcon", ""], "argument --debugcon: must be a file path, stdio or null"),
    (["--exit-code", "shell"], "argument --exit-code: invalid choice: 'shell'"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
])
def test_bad_option_value(capsys, argv, message):
    status, err = run_cli(capsys, GUEST, *argv)
    assert status == 2
    assert err.startswith("pykvmm: error: ") and err.endswith(" (see pykvmm --help)\n"), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert message in err, err


def test_missing_guest_argument(capsys):
    status, err = run_cli(capsys)
    assert status == 2 and err.count("\n") == 1
    assert "the following arguments are required: GUEST.bin" in err
