"""Aggregating the runs of one (guest, policy, extent) into one row.  Pure functions."""

from __future__ import annotations

import statistics

from .options import QEMU

VARIES = "varies"  # same_output_as_off for a guest whose output differs between off's own runs


def _median_int(values: list[int]) -> int:
    return statistics.median_low(values) if values else 0


def summarize(guest: str, policy: str, extent, runs: list[dict]) -> dict:
    """One row: counts are the median over the runs (they rarely differ: timer kicks), times
    the median and the minimum."""
    walls = [r["wall_s"] for r in runs]
    exits = {k: _median_int([r["exits"].get(k, 0) for r in runs])
             for k in sorted({k for r in runs for k in r["exits"]})}
    kvm = {k: _median_int([r["kvm_stats"].get(k, 0) for r in runs])
           for k in sorted({k for r in runs for k in r["kvm_stats"]})}
    co = {k: _median_int([r["coalesce"].get(k, 0) for r in runs])
          for k in sorted({k for r in runs for k in r["coalesce"]})}
    io_ops = _median_int([r["io_ops"] for r in runs])
    nbytes = _median_int([r["printed_bytes"] for r in runs])
    wall = statistics.median(walls)
    io_exits = exits.get("io", 0) + exits.get("mmio", 0)
    return {
        "guest": guest, "policy": policy, "extent": extent, "repeats": len(runs),
        "end": sorted({r["end"] for r in runs}), "exit_status": sorted({r["exit_status"] for r in runs}),
        "exits": exits, "kvm_stats": kvm, "coalesce": co,
        "exits_varied": len({r["exits"].get("total", 0) for r in runs}) > 1,
        "io_ops": io_ops, "printed_bytes": nbytes,
        "io_exits_per_io_op": io_exits / io_ops if io_ops else None,
        "wall_median_s": wall, "wall_min_s": min(walls),
        "cpu_median_s": statistics.median([r["cpu_s"] for r in runs]),
        "us_per_io_op": wall / io_ops * 1e6 if io_ops else None,
        "us_per_byte": wall / nbytes * 1e6 if nbytes else None,
        "outputs": sorted({r["output_sha256"] for r in runs}),
        "io_ops_by_port": runs[0]["io_ops_by_port"] if runs else {},
        "mmio_ops_by_addr": runs[0]["mmio_ops_by_addr"] if runs else {},
    }


def mark_against_off(rows: list[dict]) -> None:
    """Add ``same_output_as_off`` and ``same_io_ops_as_off`` to every row of a guest that has an
    ``off`` row (None where there is nothing to compare with, VARIES where off's own repeats
    printed different output)."""
    off = {r["guest"]: r for r in rows if r["policy"] == "off"}
    for r in rows:
        base = off.get(r["guest"])
        if base is None or r["policy"] == QEMU:
            r.setdefault("same_output_as_off", None)
            r.setdefault("same_io_ops_as_off", None)
            continue
        if len(base["outputs"]) > 1:
            # off's own runs differ: the output depends on time (pit_tick, cmos_clock)
            r["same_output_as_off"] = VARIES
        else:
            r["same_output_as_off"] = r["outputs"] == base["outputs"]
        r["same_io_ops_as_off"] = r["io_ops"] == base["io_ops"]


def qemu_row(guest: str, q: dict) -> dict:
    ec = q.get("exit_counts")
    return {
        "guest": guest, "policy": QEMU, "extent": None, "repeats": len(q["runs"]),
        "end": ["debug-exit"] if q["ok"] else ["error"],
        "exit_status": sorted({r["status"] for r in q["runs"]}, key=lambda s: (s is None, s)),
        # exits: KVM's count for QEMU's vCPU (QMP query-stats), net of the empty boot sector
        "exits": {"total": ec["net"]["exits"]} if ec else {},
        "kvm_stats": dict(ec["net"]) if ec else {}, "coalesce": {}, "exits_varied": False,
        "io_ops": None, "printed_bytes": q["printed_bytes"], "io_exits_per_io_op": None,
        "wall_median_s": q["net_s"], "wall_min_s": None, "cpu_median_s": None,
        "us_per_io_op": None, "us_per_byte": q["us_per_byte"], "outputs": [],
        "qemu": {k: q[k] for k in ("wall_median_s", "wall_min_s", "startup_median_s", "net_s",
                                   "command")},
    }
