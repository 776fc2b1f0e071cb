"""The hashing unit and its table (patent 440), in the three embodiments of Figures 5, 6 and 7.

A table hit must imply byte equality, so digests are BLAKE2b with 128-bit output (never Python's
``hash()`` or a CRC, which collide by design or by chance), and Figure 7's entries keep the block's
bytes themselves.  Every table is an LRU with a hard cap on entries (``--table-size``), so a guest
that produces endless distinct blocks cannot grow host memory without bound.
"""

from __future__ import annotations

from collections import OrderedDict
from hashlib import blake2b

DIGEST_BYTES = 16  # 128 bits
DEFAULT_TABLE_SIZE = 4096
ENTRIES_PER_SITE = 4  # Figure 5: entries kept per address (the extension's bound; see Fig5Table)

HASH_BLOCK = "block"
HASH_BLOCK_ADDRESS = "block+address"


class HashingUnit:
    """Digests of a block's bytes, with or without its address (patent: 507/511, and the variant
    "a hash value for the block of instructions alone")."""

    def __init__(self, mode: str = HASH_BLOCK_ADDRESS):
        if mode not in (HASH_BLOCK, HASH_BLOCK_ADDRESS):
            raise ValueError(f"hash mode must be {HASH_BLOCK} or {HASH_BLOCK_ADDRESS}, not {mode!r}")
        self.with_address = mode == HASH_BLOCK_ADDRESS
        self.mode = mode

    def block(self, code: bytes, address: int) -> bytes:
        h = blake2b(code, digest_size=DIGEST_BYTES)
        if self.with_address:
            h.update(address.to_bytes(8, "little"))
        return h.digest()

    @staticmethod
    def address(address: int, vm_id: int) -> bytes:
        """Figure 7's hashed address value: the physical address qualified by the VM."""
        return blake2b(address.to_bytes(8, "little") + vm_id.to_bytes(8, "little"),
                       digest_size=DIGEST_BYTES).digest()


class _Lru:
    def __init__(self, cap: int):
        if cap < 1:
            raise ValueError(f"table size must be a positive integer, not {cap}")
        self.cap = cap
        self.d: OrderedDict = OrderedDict()
        self.evictions = 0

    def get(self, key):
        v = self.d.get(key)
        if v is not None:
            self.d.move_to_end(key)
        return v

    def put(self, key, value) -> None:
        d = self.d
        d[key] = value
        d.move_to_end(key)
        while len(d) > self.cap:
            d.popitem(last=False)
            self.evictions += 1

    def __len__(self) -> int:
        return len(self.d)


class Fig5Entry:
    """One remembered site: the digest over ``nbytes`` bytes from the site (and the address), and
    the block size in bytes (0 for a singular site, whose digest covers the bytes the scan read,
    so a changed site is noticed)."""

    __slots__ = ("digest", "size", "nbytes", "unchecked")

    def __init__(self, digest: bytes, size: int, nbytes: int):
        self.digest, self.size, self.nbytes = digest, size, nbytes
        self.unchecked = 0  # singular hits since the digest was last checked

    @property
    def singular(self) -> bool:
        return self.size == 0


class Fig5Table:
    """Figure 5: keyed by site address; each address holds up to ENTRIES_PER_SITE entries
    (503, 511-513).  Singular entries are kept first so they are checked first."""

    def __init__(self, cap: int = DEFAULT_TABLE_SIZE):
        self.lru = _Lru(cap)

    def entries(self, site: int) -> list[Fig5Entry] | None:
        return self.lru.get(site)

    def add(self, site: int, entry: Fig5Entry) -> None:
        entries = self.lru.get(site)
        if entries is None:
            self.lru.put(site, [entry])
            return
        if entry.singular:
            entries.insert(0, entry)
        else:
            entries.append(entry)
        if len(entries) > ENTRIES_PER_SITE:
            # Drop the oldest entry of the same kind that is not the new one.
            for i, e in enumerate(entries):
                if e is not entry:
                    del entries[i]
                    break

    def __len__(self) -> int:
        return len(self.lru)


class Fig6Table:
    """Figure 6: a set of block digests (606-608)."""

    def __init__(self, cap: int = DEFAULT_TABLE_SIZE):
        self.lru = _Lru(cap)

    def seen(self, digest: bytes) -> bool:
        return self.lru.get(digest) is not None

    def add(self, digest: bytes) -> None:
        self.lru.put(digest, True)

    def __len__(self) -> int:
        return len(self.lru)


class Fig7Table:
    """Figure 7: hashed address value -> (block size, the block's bytes) (704, 710)."""

    def __init__(self, cap: int = DEFAULT_TABLE_SIZE):
        self.lru = _Lru(cap)

    def get(self, key: bytes):
        return self.lru.get(key)

    def put(self, key: bytes, size: int, code: bytes) -> None:
        self.lru.put(key, (size, code))

    def __len__(self) -> int:
        return len(self.lru)
