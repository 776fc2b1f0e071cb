"""A guest that produces endless distinct blocks cannot grow the block table without bound
(issue 8, section 2).  One million distinct blocks go straight into each table; the table keeps
its cap and the process's resident memory grows by less than TABLE_RSS_BOUND.

The bound: an entry costs a few hundred bytes (an int or 16-byte key, a 16-byte BLAKE2b digest,
for Figure 7 the block's bytes), so the default 4096 entries stay near 2 MiB for the 32-byte
blocks fed here; TABLE_RSS_BOUND adds allocator slack.  Without the cap, a million entries cost
several hundred MiB.  Figure 7's worst case is table size x the largest block (64 KiB, a whole
real-mode segment), which is why --table-size exists.
"""

from __future__ import annotations

import gc

import psutil
import pytest

from pykvmm.coalesce.hashing import (DEFAULT_TABLE_SIZE, ENTRIES_PER_SITE, Fig5Entry, Fig5Table,
                                     Fig6Table, Fig7Table, HashingUnit)

BLOCKS = 1_000_000
TABLE_RSS_BOUND = 24 << 20


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def _block(i: int) -> bytes:
    return i.to_bytes(8, "little") * 4  # 32 distinct bytes per block


@pytest.mark.parametrize("fig", ["fig5", "fig6", "fig7"])
def test_a_million_distinct_blocks_stay_within_the_cap_and_the_rss_bound(fig):
    h = HashingUnit()
    before = _rss()
    if fig == "fig5":
        t = Fig5Table(DEFAULT_TABLE_SIZE)
        for i in range(BLOCKS):
            t.add(i, Fig5Entry(h.block(_block(i), i), 32, 32))
    elif fig == "fig6":
        t = Fig6Table(DEFAULT_TABLE_SIZE)
        for i in range(BLOCKS):
            t.add(h.block(_block(i), i))
    else:
        t = Fig7Table(DEFAULT_TABLE_SIZE)
        for i in range(BLOCKS):
            t.put(HashingUnit.address(i, 0), 32, _block(i))
    grown = _rss() - before
    assert len(t) == DEFAULT_TABLE_SIZE
    assert t.lru.evictions == BLOCKS - DEFAULT_TABLE_SIZE
    assert grown < TABLE_RSS_BOUND, f"{fig}: RSS grew {grown / 2**20:.1f} MiB"


def test_one_site_keeps_at_most_a_few_versions():
    """Code that changes at one address forever (self-modifying guest) keeps ENTRIES_PER_SITE."""
    h = HashingUnit()
    t = Fig5Table(16)
    for i in range(10_000):
        t.add(0x7C00, Fig5Entry(h.block(_block(i), 0x7C00), 32 if i % 3 else 0, 32))
    assert len(t) == 1 and len(t.entries(0x7C00)) <= ENTRIES_PER_SITE


def test_recently_used_sites_survive():
    h = HashingUnit()
    t = Fig5Table(100)
    for i in range(100):
        t.add(i, Fig5Entry(h.block(b"x", i), 1, 1))
    for i in range(100, 1000):
        t.entries(0)  # site 0 stays hot
        t.add(i, Fig5Entry(h.block(b"x", i), 1, 1))
    assert t.entries(0) is not None and t.entries(1) is None and len(t) == 100
