"""Markdown tables of the summary rows.  Pure functions (no KVM, no matplotlib)."""

from __future__ import annotations

IO_EXITS_NOTE = ("KVM's binary stats are read for the same run: on this host (KVM backend "
                 "`kvm_pvm`) `exits` and `mmio_exits` count, but `io_exits` stays 0, so port-IO "
                 "exits are pykvmm's own count (`io`).")


def _num(v, digits: int = 0) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def _ms(v) -> str:
    return "–" if v is None else f"{v * 1e3:,.1f}"


def _check(v) -> str:
    if isinstance(v, str):
        return f"{v} (off too)"  # time-dependent output: nothing to compare
    return "–" if v is None else ("yes" if v else "**NO**")


COLUMNS = ("guest", "policy", "extent", "exits", "io", "mmio", "KVM exits", "KVM mmio_exits",
           "io_ops", "IO exits / io_op", "emulated insns", "hits / misses", "completions",
           "wall med ms", "wall min ms", "CPU ms", "µs / io_op", "µs / byte", "output = off")
HEADLINE_COLUMNS = ("guest", "policy", "extent", "exits", "io", "mmio", "io_ops",
                    "IO exits / io_op", "completions", "wall med ms", "µs / io_op", "µs / byte", "output = off")


def cells(r: dict) -> dict[str, str]:
    ex, ks, co = r["exits"], r["kvm_stats"], r["coalesce"]
    qemu = r["policy"] == "qemu"
    hits = (f"{co['table_hits']:,} / {co['table_misses']:,}" if "table_hits" in co else "–")
    return {
        "guest": r["guest"], "policy": r["policy"],
        "extent": "–" if r["extent"] is None else str(r["extent"]),
        "exits": _num(ex.get("total")),
        "io": _num(ex.get("io")) if not qemu else "–",
        "mmio": _num(ex.get("mmio")) if not qemu else "–",
        "KVM exits": _num(ks.get("exits")), "KVM mmio_exits": _num(ks.get("mmio_exits")),
        "io_ops": _num(r["io_ops"]),
        "IO exits / io_op": _num(r["io_exits_per_io_op"], 3),
        "emulated insns": _num(co.get("instructions_emulated")) if "instructions_emulated" in co else "–",
        "hits / misses": hits,
        "completions": _num(co.get("completions")) if "completions" in co else "–",
        "wall med ms": _ms(r["wall_median_s"]) + (" (net)" if qemu else ""),
        "wall min ms": _ms(r["wall_min_s"]), "CPU ms": _ms(r["cpu_median_s"]),
        "µs / io_op": _num(r["us_per_io_op"], 2), "µs / byte": _num(r["us_per_byte"], 2),
        "output = off": _check(r.get("same_output_as_off")),
    }


def markdown(rows: list[dict], columns=COLUMNS) -> str:
    """A GitHub Markdown table; numeric columns right-aligned."""
    left = {"guest", "policy"}
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join(":---" if c in left else "---:" for c in columns) + "|"]
    for r in rows:
        c = cells(r)
        lines.append("| " + " | ".join(c[k] for k in columns) + " |")
    return "\n".join(lines) + "\n"


def headline_rows(rows: list[dict], guests: list[str], extent) -> list[dict]:
    """The rows at one extent (and the extent-free baselines) for the chosen guests."""
    return [r for r in rows if r["guest"] in guests and r["extent"] in (None, extent)]


def document(meta: dict, rows: list[dict], headline: list[dict], skipped: list[str]) -> str:
    """table.md: how it was made, the headline table, notes, the full table."""
    out = [f"# Exit counts\n",
           f"Measured on {meta['host']} ({meta['cpu']}, Linux {meta['kernel']}, Python "
           f"{meta['python']}), pykvmm {meta['commit']}, {meta['date']}, by:\n",
           f"    {meta['command']}\n",
           f"Each configuration ran {meta['repeats']} times in-process (pykvmm's firmware first, "
           f"output to a file; the engine policies with warm-up {meta.get('warmup', 0)}); counts are medians, `wall` is the run loop's wall time (median, "
           "minimum). `exits` are KVM_RUN returns by reason as pykvmm counts them (`intr` kicks "
           "included in `exits`); `IO exits / io_op` is (io + mmio exits) / guest IO operations. "
           "For QEMU, `exits` is KVM's `exits` statistic for its vCPU (QMP `query-stats`, read "
           "after the guest halts in a run without isa-debug-exit) minus an empty boot sector's. "
           "`µs / byte` is wall time per byte the guest printed (firmware included; for QEMU, "
           "(wall(guest) − wall(empty boot sector)) / bytes, since QEMU's start-up takes seconds). "
           f"{IO_EXITS_NOTE}\n",
           "## Headline\n", markdown(headline, HEADLINE_COLUMNS)]
    if skipped:
        out.append("\n" + "\n".join(f"* {s}" for s in skipped) + "\n")
    out += ["\n## Every run\n", markdown(rows)]
    return "\n".join(out)
