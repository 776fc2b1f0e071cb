"""Summaries and Markdown tables, from made-up runs (no KVM)."""

from __future__ import annotations

from pykvmm.measure.summary import mark_against_off, qemu_row, summarize
from pykvmm.measure.table import COLUMNS, HEADLINE_COLUMNS, document, headline_rows, markdown


def _run(wall, total=10, io=8, out="aa", io_ops=16, nbytes=4, co=None):
    return {"end": "debug-exit", "exit_status": 0, "wall_s": wall, "cpu_s": wall,
            "exits": {"total": total, "io": io, "mmio": 0}, "kvm_stats": {"exits": total, "io_exits": 0},
            "io_ops": io_ops, "printed_bytes": nbytes, "output_sha256": out, "coalesce": co or {},
            "io_ops_by_port": {"0x3f8": io_ops}, "mmio_ops_by_addr": {}}


def _rows():
    off = summarize("g", "off", None, [_run(0.3), _run(0.1), _run(0.2)])
    co = {"table_hits": 5, "table_misses": 1, "completions": 2, "instructions_emulated": 40}
    fig5 = summarize("g", "fig5", 10, [_run(0.1, total=4, io=2, co=co)])
    bad = summarize("g", "fig6", 10, [_run(0.1, out="bb")])
    rows = [off, fig5, bad]
    mark_against_off(rows)
    return rows


def test_summary_takes_median_and_min_and_per_unit_figures():
    off = _rows()[0]
    assert off["wall_median_s"] == 0.2 and off["wall_min_s"] == 0.1
    assert off["io_exits_per_io_op"] == 0.5
    assert abs(off["us_per_io_op"] - 0.2 / 16 * 1e6) < 1e-6
    assert abs(off["us_per_byte"] - 0.2 / 4 * 1e6) < 1e-6


def test_output_compared_with_off():
    off, fig5, bad = _rows()
    assert off["same_output_as_off"] and fig5["same_output_as_off"]
    assert bad["same_output_as_off"] is False


def test_markdown_table_shape_and_cells():
    text = markdown(_rows())
    lines = text.splitlines()
    assert len(lines) == 2 + 3
    assert all(line.count("|") == len(COLUMNS) + 1 for line in lines)
    assert "| g | fig5 | 10 | 4 | 2 | 0 |" in text
    assert "5 / 1" in text and "**NO**" in text
    assert lines[1].startswith("|:---|:---|---:|")


def test_headline_keeps_one_extent_and_the_baselines():
    rows = _rows() + [summarize("g", "fig5", 1, [_run(0.1)])]
    head = headline_rows(rows, ["g"], 10)
    assert [(r["policy"], r["extent"]) for r in head] == [("off", None), ("fig5", 10), ("fig6", 10)]
    assert markdown(head, HEADLINE_COLUMNS).count("\n") == 5


def test_qemu_row_and_document():
    q = {"ok": True, "runs": [{"status": 1}], "printed_bytes": 100, "net_s": 0.001,
         "us_per_byte": 10.0, "wall_median_s": 3.0, "wall_min_s": 3.0, "startup_median_s": 2.999,
         "command": "qemu ..."}
    rows = _rows() + [qemu_row("g", q)]
    mark_against_off(rows)
    text = markdown(rows, HEADLINE_COLUMNS)
    assert "| g | qemu | – | – | – | – | – |" in text and "10.00" in text and "(net)" in text
    meta = {"host": "h", "cpu": "c", "kernel": "k", "python": "3", "commit": "abc", "date": "d",
            "command": "python -m pykvmm.measure", "repeats": 3}
    doc = document(meta, rows, rows, ["QEMU baseline skipped: x"])
    assert doc.startswith("# Exit counts") and "io_exits` stays 0" in doc
    assert "* QEMU baseline skipped: x" in doc


def test_time_dependent_output_is_not_called_a_mismatch():
    off = summarize("t", "off", None, [_run(0.1, out="a"), _run(0.1, out="b")])
    fig5 = summarize("t", "fig5", 10, [_run(0.1, out="c")])
    mark_against_off([off, fig5])
    assert fig5["same_output_as_off"] == "varies"
    assert "varies (off too)" in markdown([off, fig5]) and "**NO**" not in markdown([off, fig5])
