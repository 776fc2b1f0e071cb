"""pykvmm.measure end to end: a tiny sweep whose JSON must be self-consistent."""

from __future__ import annotations

import json

import pytest

from pykvmm.measure.cli import main

pytestmark = pytest.mark.kvm


def test_tiny_sweep_is_consistent(tmp_path, capsys):
    out = tmp_path / "m"
    status = main(["--guests", "fig8", "--policies", "off,fig5", "--extents", "10", "-r", "1",
                   "--out", str(out), "--no-qemu", "--no-plot", "-q"])
    assert status == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    rows = {r["policy"]: r for r in res["summary"]}
    assert set(rows) == {"off", "fig5"} and len(res["runs"]) == 2
    # coalescing changes how IO is reached, never what the guest does
    assert rows["off"]["io_ops"] == rows["fig5"]["io_ops"] > 0
    assert rows["fig5"]["exits"]["io"] <= rows["off"]["exits"]["io"]
    assert rows["fig5"]["same_output_as_off"] is True
    for run in res["runs"]:
        assert run["end"] == "debug-exit" and run["exit_status"] == 0
        assert run["wall_s"] > 0 and run["cpu_s"] >= 0
        assert run["kvm_stats"]["exits"] > 0
    assert "io_exits` stays 0" in res["meta"]["note"]
    table = (out / "table.md").read_text()
    assert "| fig8 | fig5 | 10 |" in table and "| fig8 | off | – |" in table


def test_the_sweep_runs_the_engine_with_the_warmup_asked_for(tmp_path, capsys):
    """Default: the command line's warm-up (auto), which leaves a short guest's first sightings
    native; --warmup 0: the patent's figures as drawn, every site a candidate at once."""
    seen = {}
    for warm in (None, "0"):
        out = tmp_path / f"w{warm}"
        argv = ["--guests", "pic_sequence", "--policies", "off,fig5", "--extents", "10", "-r",
                "1", "--out", str(out), "--no-qemu", "--no-plot", "-q"]
        status = main(argv + (["--warmup", warm] if warm else []))
        assert status == 0, capsys.readouterr().err
        res = json.loads((out / "results.json").read_text())
        fig5 = [r for r in res["runs"] if r["policy"] == "fig5"][0]
        seen[warm] = (res["meta"]["warmup"], fig5["coalesce"])
    assert seen[None][0] == "auto" and seen[None][1]["warmup"] == "auto"
    assert seen["0"][0] == 0 and seen["0"][1]["warmup"] == 0
    # warm-up 0 scans at the first sighting; auto sits the short guest out
    assert seen["0"][1]["scans"] > 0 and seen[None][1]["scans"] == 0
    with pytest.raises(SystemExit) as e:
        main(["--warmup", "soon", "--no-qemu"])
    assert e.value.code == 2 and "--warmup" in capsys.readouterr().err
