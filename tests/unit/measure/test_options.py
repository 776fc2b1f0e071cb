"""pykvmm.measure's argument handling: every user mistake is one line and exit status 2."""

from __future__ import annotations

import pytest

from pykvmm.errors import UsageError
from pykvmm.measure import cli
from pykvmm.measure import options as O


def test_default_policies_have_the_baselines_and_every_engine_policy():
    ps = O.parse_policies(None)
    assert ps[0] == "off" and ps[-1] == "kvm-ring"
    assert {"fig5", "fig6", "fig7"} <= set(ps)


def test_unknown_policy_names_the_choices():
    with pytest.raises(UsageError, match=r"unknown policy 'fig9'; choose from off, fig5"):
        O.parse_policies("off,fig9")


@pytest.mark.parametrize("text, msg", [("0", "not 0"), ("-3", "not -3"), ("ten", "not 'ten'"),
                                        ("1,,2", "comma-separated"), ("99999", "up to")])
def test_bad_extent(text, msg):
    with pytest.raises(UsageError, match=msg):
        O.parse_extents(text)


def test_extents_keep_order_and_drop_duplicates():
    assert O.parse_extents("10,1,10,3") == [10, 1, 3]


def test_auto_extent_refused_while_the_engine_has_none(monkeypatch):
    monkeypatch.delattr(O.E, "AUTO_EXTENT", raising=False)
    with pytest.raises(UsageError, match="extent auto is not available"):
        O.parse_extents("auto")
    monkeypatch.setattr(O.E, "AUTO_EXTENT", -1, raising=False)
    assert O.parse_extents("auto,5") == ["auto", 5]


@pytest.mark.parametrize("text", ["0", "x", "1001"])
def test_bad_repeats(text):
    with pytest.raises(UsageError, match="repeats must be"):
        O.parse_repeats(text)


def test_guests_by_name_and_default_leaves_out_echo(tmp_path):
    for n in ("a", "b", "echo"):
        (tmp_path / f"{n}.bin").write_bytes(b"\xf4")
    assert list(O.parse_guests(None, tmp_path)) == ["a", "b"]
    assert list(O.parse_guests("b", tmp_path)) == ["b"]
    with pytest.raises(UsageError, match=r"unknown guest 'zz'; choose from a, b, echo"):
        O.parse_guests("zz", tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        O.parse_guests("nope/x.bin", tmp_path)


def test_configurations_give_extent_free_policies_one_row():
    assert O.configurations(["off", "fig5", "kvm-ring"], [1, 10]) == [
        ("off", None), ("fig5", 1), ("fig5", 10), ("kvm-ring", None)]


@pytest.mark.parametrize("argv, msg", [
    (["--guests", "no_such_guest"], "unknown guest 'no_such_guest'"),
    (["--policies", "fig9"], "unknown policy 'fig9'"),
    (["--extents", "0"], "extent must be a positive integer"),
    (["--repeats", "zero"], "repeats must be a positive integer"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_cli_errors_are_one_line_and_status_2(argv, msg, capsys, tmp_path):
    try:
        status = cli.main(argv + ["--out", str(tmp_path / "out"), "-q", "--no-qemu"])
    except SystemExit as e:  # argparse's own errors leave through _Parser.error
        status = e.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and msg in err and "Traceback" not in err
    assert err.startswith("pykvmm.measure: error: ")


def test_cli_bad_out_is_a_usage_error(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("")
    assert cli.main(["--guests", "fig8", "--out", str(f), "-q"]) == 2
    assert "is not a directory" in capsys.readouterr().err
