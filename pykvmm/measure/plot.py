"""Plots of a sweep, with matplotlib (the optional ``plot`` extra).  The tables never need it."""

from __future__ import annotations

import math
from pathlib import Path

from .options import AUTO, KVM_RING, NO_EXTENT_POLICIES, QEMU

PLOT_HINT = "matplotlib is not installed (pip install 'pykvmm[plot]')"


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _grid(n: int) -> tuple[int, int]:
    cols = min(4, n)
    return math.ceil(n / cols), cols


def plot_all(rows: list[dict], out_dir: Path, headline_extent, fmt: str = "png") -> list[Path]:
    """exits_per_io.<fmt> and wall_by_policy.<fmt>; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    guests = list(dict.fromkeys(r["guest"] for r in rows))
    written = []

    # 1. IO exits per IO operation against the extent, one panel per guest.
    nr, nc = _grid(len(guests))
    fig, axes = plt.subplots(nr, nc, figsize=(3.6 * nc, 2.8 * nr), squeeze=False)
    for ax, g in zip(axes.flat, guests):
        gr = [r for r in rows if r["guest"] == g and r["io_exits_per_io_op"] is not None]
        numeric = sorted({r["extent"] for r in gr if isinstance(r["extent"], int)})
        auto_x = (max(numeric) * 2) if numeric else 1
        for policy in dict.fromkeys(r["policy"] for r in gr):
            pr = [r for r in gr if r["policy"] == policy]
            if policy in NO_EXTENT_POLICIES:
                ax.axhline(pr[0]["io_exits_per_io_op"], ls="--" if policy == "off" else ":",
                           color="black" if policy == "off" else "tab:red", lw=1, label=policy)
                continue
            pts = sorted(((auto_x if r["extent"] == AUTO else r["extent"]), r["io_exits_per_io_op"])
                         for r in pr)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=1, label=policy)
        ax.set_xscale("log")
        if numeric:
            ticks = numeric + ([auto_x] if any(r["extent"] == AUTO for r in gr) else [])
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(t) if t != auto_x or not any(r["extent"] == AUTO for r in gr)
                                else AUTO for t in ticks], fontsize=7)
        ax.set_ylim(bottom=0)
        ax.set_title(g, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(guests):]:
        ax.axis("off")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8)
    fig.supxlabel("extent (instructions scanned after the trapping IO)", fontsize=9)
    fig.supylabel("(io + mmio exits) / guest IO operation", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path = out_dir / f"exits_per_io.{fmt}"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)

    # 2. Wall time per policy (engine policies at the headline extent), one panel per guest.
    fig, axes = plt.subplots(nr, nc, figsize=(3.6 * nc, 2.8 * nr), squeeze=False)
    for ax, g in zip(axes.flat, guests):
        gr = [r for r in rows if r["guest"] == g and r["extent"] in (None, headline_extent)]
        names = [r["policy"] for r in gr]
        med = [r["wall_median_s"] * 1e3 for r in gr]
        colors = ["tab:gray" if p == "off" else "tab:red" if p == KVM_RING else
                  "tab:purple" if p == QEMU else "tab:blue" for p in names]
        ax.bar(range(len(gr)), med, color=colors)
        mins = [(i, r["wall_min_s"] * 1e3) for i, r in enumerate(gr) if r["wall_min_s"] is not None]
        ax.plot([i for i, _ in mins], [v for _, v in mins], "k_", ms=10)
        ax.set_xticks(range(len(gr)))
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        ax.set_title(g, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(guests):]:
        ax.axis("off")
    fig.supylabel("wall time, ms (bar: median, tick: min; qemu: minus start-up)", fontsize=9)
    fig.suptitle(f"engine policies at extent {headline_extent}", fontsize=9)
    fig.tight_layout()
    path = out_dir / f"wall_by_policy.{fmt}"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
    return written
