"""The POST code port (0x80): firmware writes progress codes here; a POST card shows them.

Codes are recorded for stats: the most recent ``limit`` codes in order, and a total count, so a
guest writing in a loop cannot grow host memory.  Reads return the last code written, which is
what most chipsets' port-80 latch does (and a read is also the classic ISA IO delay).
"""

from __future__ import annotations

from collections import deque

DEFAULT_LIMIT = 256  # Codes kept; older ones are dropped but still counted.


class PostPort:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"limit must be a positive integer, not {limit!r}")
        self.codes: deque[int] = deque(maxlen=limit)
        self.count = 0
        self.last = 0

    def read(self, offset: int) -> int:
        if offset != 0:
            raise ValueError(f"the POST port has one register, offset 0, not {offset:#x}")
        return self.last

    def write(self, offset: int, value: int) -> None:
        if offset != 0:
            raise ValueError(f"the POST port has one register, offset 0, not {offset:#x}")
        self.last = value & 0xFF
        self.codes.append(self.last)
        self.count += 1

    def state(self) -> dict[str, object]:
        return {"codes": list(self.codes), "count": self.count, "last": self.last}
