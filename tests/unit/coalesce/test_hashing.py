"""The hashing unit and the three tables: byte equality, bounds, Figure 5's per-site entries."""

import pytest

from pykvmm.coalesce.hashing import (ENTRIES_PER_SITE, HASH_BLOCK, HASH_BLOCK_ADDRESS, Fig5Entry,
                                     Fig5Table, Fig6Table, Fig7Table, HashingUnit)


def test_digest_is_128_bits_and_covers_every_byte():
    h = HashingUnit(HASH_BLOCK)
    a = h.block(b"\xe6\xee\x40\xe6\xee", 0x7C00)
    assert len(a) == 16
    assert a != h.block(b"\xe6\xee\x41\xe6\xee", 0x7C00)


def test_block_hash_ignores_the_address_and_block_address_hash_does_not():
    blk, both = HashingUnit(HASH_BLOCK), HashingUnit(HASH_BLOCK_ADDRESS)
    code = b"\xb0\x01\xe6\xee"
    assert blk.block(code, 0x7C00) == blk.block(code, 0x8000)
    assert both.block(code, 0x7C00) != both.block(code, 0x8000)


def test_address_hash_is_qualified_by_the_vm():
    assert HashingUnit.address(0x7C10, 0) != HashingUnit.address(0x7C10, 1)


def test_unknown_hash_mode_is_refused():
    with pytest.raises(ValueError, match="hash mode must be"):
        HashingUnit("crc32")


def test_fig5_keeps_singular_entries_first_and_bounds_entries_per_site():
    t = Fig5Table(16)
    for i in range(ENTRIES_PER_SITE + 3):
        t.add(0x7C00, Fig5Entry(bytes([i]) * 16, 4 + i, 4 + i))
    t.add(0x7C00, Fig5Entry(b"s" * 16, 0, 10))
    entries = t.entries(0x7C00)
    assert len(entries) == ENTRIES_PER_SITE
    assert entries[0].singular


@pytest.mark.parametrize("table", [Fig5Table, Fig6Table, Fig7Table])
def test_tables_are_bounded_lru(table):
    t = table(100)
    for i in range(1000):
        if table is Fig5Table:
            t.add(i, Fig5Entry(b"x" * 16, 2, 2))
        elif table is Fig6Table:
            t.add(i.to_bytes(16, "little"))
        else:
            t.put(i.to_bytes(16, "little"), 2, b"ab")
    assert len(t) == 100
    assert t.lru.evictions == 900


def test_fig7_entry_keeps_the_block_bytes():
    t = Fig7Table(4)
    t.put(b"k" * 16, 3, b"\xe6\xee\x90")
    assert t.get(b"k" * 16) == (3, b"\xe6\xee\x90")


def test_table_size_must_be_positive():
    with pytest.raises(ValueError, match="table size must be a positive integer, not 0"):
        Fig6Table(0)
