"""Hygiene under load (issue 8, section 6).  CI runs a smaller count than scripts/hygiene.py
(1,000 VMs): descriptors, resident memory and mappings stay flat; four VMs at once in threads
do not see each other's devices, memory or tables."""

from __future__ import annotations

import pytest

from . import hygiene as H

pytestmark = pytest.mark.kvm

SEQUENTIAL = 100
RSS_SLACK = 16 << 20  # allocator noise after the warm-up; a leaked VM would cost far more


def test_sequential_vms_keep_descriptors_memory_and_mappings_flat():
    samples = H.sequential(SEQUENTIAL, every=30)
    first, last = samples[0], samples[-1]
    assert last["vms"] == SEQUENTIAL
    assert last["fds"] == first["fds"], samples
    assert last["maps"] <= first["maps"] + 2, samples
    assert last["threads"] == first["threads"], samples  # kickers and input pumps are joined
    assert last["rss"] - first["rss"] < RSS_SLACK, samples


def test_four_vms_at_once_have_no_cross_talk(tmp_path):
    count = 3000
    results = H.parallel(4, count, str(tmp_path))
    tables = []
    for r in results:
        assert (r["end"], r["status"]) == ("debug-exit", 0), r["letter"]
        assert r["serial"] == r["letter"].encode() * count, r["letter"]
        assert r["serial_bytes"] == count
        assert r["marker"] == count  # each VM's RAM is its own
        assert r["com1_ops"] == count  # its own THR writes, no one else's (no firmware here)
        if r["table"] is not None:
            tables.append(r["table"])
    assert len({id(t) for t in tables}) == len(tables) >= 3
