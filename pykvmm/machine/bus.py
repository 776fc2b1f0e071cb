"""Port-IO and MMIO buses.

A bus maps address ranges to devices (sorted, overlaps refused) and hands each device the offset
from its range's base.  Devices are 8-bit, as every legacy PC device is: a wider access is split
into byte accesses at consecutive addresses, each routed on its own, which is what the ISA bus
does for an 8-bit peripheral.  An address no device claims reads as all ones (0xFF per byte: the
ISA data lines float high) and swallows writes; both are counted per address.

``io_ops`` counts guest IO *operations*: one per IN/OUT, one per element of a string IO, one per
MMIO access, whether it reached the bus from a KVM exit or from the emulator.
"""

from __future__ import annotations

import bisect
from typing import Callable, Protocol

from ..errors import PykvmmError


class ByteDevice(Protocol):
    def read(self, offset: int) -> int: ...

    def write(self, offset: int, value: int) -> None: ...


# An IO-log sink: (space, address, is_write, size, value). space is "pio" or "mmio".
IoLogger = Callable[[str, int, bool, int, int], None]

_ALL_ONES = (0, 0xFF, 0xFFFF, 0xFFFFFF, 0xFFFFFFFF, 0xFF_FFFFFFFF, 0xFFFF_FFFFFFFF, 0xFFFFFF_FFFFFFFF,
             0xFFFFFFFF_FFFFFFFF)


class BusError(PykvmmError):
    pass


class _Bus:
    space = "?"
    limit = 0

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ranges: list[tuple[int, int, object, str]] = []  # (start, end, device, name)
        self.io_ops: dict[int, int] = {}
        self.unclaimed_reads: dict[int, int] = {}
        self.unclaimed_writes: dict[int, int] = {}
        self.log: IoLogger | None = None

    def register(self, base: int, length: int, device: object, name: str = "") -> None:
        """Claim [base, base+length) for ``device``; overlapping an existing range is refused."""
        if length <= 0 or base < 0 or base + length > self.limit:
            raise BusError(f"bad {self.space} range {base:#x}+{length:#x} for {name or device!r}")
        end = base + length
        i = bisect.bisect_left(self._starts, base)
        if i > 0 and self._ranges[i - 1][1] > base:
            raise BusError(f"{self.space} range {base:#x}-{end - 1:#x} ({name}) overlaps "
                           f"{self._ranges[i - 1][3]} at {self._ranges[i - 1][0]:#x}")
        if i < len(self._ranges) and self._ranges[i][0] < end:
            raise BusError(f"{self.space} range {base:#x}-{end - 1:#x} ({name}) overlaps "
                           f"{self._ranges[i][3]} at {self._ranges[i][0]:#x}")
        self._starts.insert(i, base)
        self._ranges.insert(i, (base, end, device, name))

    def find(self, addr: int) -> tuple[object, int] | None:
        """(device, offset) for a byte address, or None when no device claims it."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            start, end, dev, _ = self._ranges[i]
            if addr < end:
                return dev, addr - start
        return None

    def claims(self, addr: int, size: int = 1) -> bool:
        """True when one device claims every byte of [addr, addr+size)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        return i >= 0 and addr + size <= self._ranges[i][1]

    def devices(self) -> list[tuple[int, int, object, str]]:
        return list(self._ranges)

    # -- accesses ---------------------------------------------------------------------------------

    def _read_byte(self, addr: int) -> int:
        hit = self.find(addr)
        if hit is None:
            self.unclaimed_reads[addr] = self.unclaimed_reads.get(addr, 0) + 1
            return 0xFF
        dev, off = hit
        return dev.read(off) & 0xFF  # type: ignore[attr-defined]

    def _write_byte(self, addr: int, value: int) -> None:
        hit = self.find(addr)
        if hit is None:
            self.unclaimed_writes[addr] = self.unclaimed_writes.get(addr, 0) + 1
            return
        dev, off = hit
        dev.write(off, value & 0xFF)  # type: ignore[attr-defined]

    def read(self, addr: int, size: int) -> int:
        """One guest read of ``size`` bytes (1, 2, 4 or 8), little-endian."""
        ops = self.io_ops
        ops[addr] = ops.get(addr, 0) + 1
        if size == 1:
            value = self._read_byte(addr)
        else:
            value = 0
            for i in range(size):
                value |= self._read_byte((addr + i) & (self.limit - 1)) << (8 * i)
        if self.log is not None:
            self.log(self.space, addr, False, size, value)
        return value

    def write(self, addr: int, size: int, value: int) -> None:
        """One guest write of ``size`` bytes, little-endian."""
        ops = self.io_ops
        ops[addr] = ops.get(addr, 0) + 1
        if self.log is not None:
            self.log(self.space, addr, True, size, value)
        if size == 1:
            self._write_byte(addr, value)
        else:
            for i in range(size):
                self._write_byte((addr + i) & (self.limit - 1), value >> (8 * i))

    def total_ops(self) -> int:
        return sum(self.io_ops.values())


class PortBus(_Bus):
    """The x86 16-bit IO port space.

    Port IO is the run loop's commonest exit, so byte accesses take a fast path: one dict lookup
    from port to the device's bound read/write method and offset, and a flat list of 65,536
    counters for io_ops (list indexing is cheaper than a dict's get-and-set).
    """

    space = "pio"
    limit = 0x10000

    def __init__(self) -> None:
        self._log: IoLogger | None = None
        super().__init__()
        self.op_counts = [0] * self.limit
        self._writers: dict[int, tuple] = {}
        self._readers: dict[int, tuple] = {}
        # Per-port byte accessors for the emulator's compiled IN/OUT: ``byte_readers[port](port)``
        # and ``byte_writers[port](port, value)`` do what read(port, 1) and write(port, 1,
        # value) do (log, route, unclaimed ports) except counting: the caller adds 1 to
        # ``op_counts[port]`` itself (compiled code does it inline, one call fewer per IO).
        # A device may offer its own accessors for some registers (``byte_ops``, e.g. the
        # UART's THR and LSR): used while the port is not routed elsewhere and no log is set.
        self.byte_readers: list = []
        self.byte_writers: list = []
        self._fast: dict[int, tuple] = {}  # port -> the device's (reader, writer), either None
        self._build_byte_accessors()

    @property
    def log(self) -> IoLogger | None:  # type: ignore[override]
        return self._log

    @log.setter
    def log(self, value: IoLogger | None) -> None:
        self._log = value
        if hasattr(self, "byte_readers"):
            self._build_byte_accessors()  # the accessors log only when a log is set

    def _build_byte_accessors(self) -> None:
        ur, uw = self.unclaimed_reads, self.unclaimed_writes
        log = self._log
        if log is None:
            def unclaimed_read(port: int) -> int:
                ur[port] = ur.get(port, 0) + 1
                return 0xFF

            def unclaimed_write(port: int, value: int) -> None:
                uw[port] = uw.get(port, 0) + 1
        else:
            def unclaimed_read(port: int) -> int:
                ur[port] = ur.get(port, 0) + 1
                log("pio", port, False, 1, 0xFF)
                return 0xFF

            def unclaimed_write(port: int, value: int) -> None:
                log("pio", port, True, 1, value)
                uw[port] = uw.get(port, 0) + 1
        if self.byte_readers:  # rebuilt in place: compiled code holds these lists
            self.byte_readers[:] = [unclaimed_read] * self.limit
            self.byte_writers[:] = [unclaimed_write] * self.limit
        else:
            self.byte_readers = [unclaimed_read] * self.limit
            self.byte_writers = [unclaimed_write] * self.limit
        for port in self._readers:
            self._set_byte_accessors(port)

    def _set_byte_accessors(self, port: int) -> None:
        log = self._log
        rd, roff = self._readers[port]
        wr, woff = self._writers[port]
        if log is None:
            def read(port: int) -> int:
                return rd(roff) & 0xFF

            def write(port: int, value: int) -> None:
                wr(woff, value & 0xFF)
        else:
            def read(port: int) -> int:
                value = rd(roff) & 0xFF
                log("pio", port, False, 1, value)
                return value

            def write(port: int, value: int) -> None:
                log("pio", port, True, 1, value)
                wr(woff, value & 0xFF)
        fast_read, fast_write = self._fast.get(port, (None, None)) if log is None else (None, None)
        self.byte_readers[port] = fast_read or read
        self.byte_writers[port] = fast_write or write

    def register(self, base: int, length: int, device: object, name: str = "") -> None:
        super().register(base, length, device, name)
        ops = getattr(device, "byte_ops", None)
        for port in range(base, base + length):
            self._writers[port] = (device.write, port - base)  # type: ignore[attr-defined]
            self._readers[port] = (device.read, port - base)  # type: ignore[attr-defined]
            if ops is not None:
                self._fast[port] = ops(port - base)
            self._set_byte_accessors(port)

    def route(self, port: int, read: Callable[[int], int] | None = None,
              write: Callable[[int, int], None] | None = None) -> None:
        """Send byte reads and/or writes of one registered port to other callables (taking the
        same offset and value as the device's own), e.g. a wrapper that only some registers
        of a device need.  Counting and the IO log stay the bus's."""
        if port not in self._readers:
            raise BusError(f"pio port {port:#x} is not registered; register its device first")
        fast_read, fast_write = self._fast.get(port, (None, None))
        if read is not None:
            self._readers[port] = (read, self._readers[port][1])
            fast_read = None  # the device's own accessor would bypass the route
        if write is not None:
            self._writers[port] = (write, self._writers[port][1])
            fast_write = None
        self._fast[port] = (fast_read, fast_write)
        self._set_byte_accessors(port)

    def _read_byte(self, addr: int) -> int:
        r = self._readers.get(addr)
        if r is None:
            self.unclaimed_reads[addr] = self.unclaimed_reads.get(addr, 0) + 1
            return 0xFF
        return r[0](r[1]) & 0xFF

    def _write_byte(self, addr: int, value: int) -> None:
        w = self._writers.get(addr)
        if w is None:
            self.unclaimed_writes[addr] = self.unclaimed_writes.get(addr, 0) + 1
            return
        w[0](w[1], value & 0xFF)

    @property
    def io_ops(self) -> dict[int, int]:  # type: ignore[override]
        return {port: n for port, n in enumerate(self.op_counts) if n}

    @io_ops.setter
    def io_ops(self, value) -> None:
        pass  # the base constructor's dict is replaced by op_counts

    def write(self, port: int, size: int, value: int) -> None:
        self.op_counts[port] += 1
        if self.log is not None:
            self.log("pio", port, True, size, value)
        if size == 1:
            w = self._writers.get(port)
            if w is None:
                self.unclaimed_writes[port] = self.unclaimed_writes.get(port, 0) + 1
            else:
                w[0](w[1], value & 0xFF)
            return
        for i in range(size):
            self._write_byte((port + i) & 0xFFFF, value >> (8 * i))

    def read(self, port: int, size: int) -> int:
        self.op_counts[port] += 1
        if size == 1:
            r = self._readers.get(port)
            if r is None:
                self.unclaimed_reads[port] = self.unclaimed_reads.get(port, 0) + 1
                value = 0xFF
            else:
                value = r[0](r[1]) & 0xFF
        else:
            value = 0
            for i in range(size):
                value |= self._read_byte((port + i) & 0xFFFF) << (8 * i)
        if self.log is not None:
            self.log("pio", port, False, size, value)
        return value

    def total_ops(self) -> int:
        return sum(self.op_counts)


class MmioBus(_Bus):
    """Memory-mapped devices, by guest-physical address."""

    space = "mmio"
    limit = 1 << 52  # x86-64 physical address width upper bound
