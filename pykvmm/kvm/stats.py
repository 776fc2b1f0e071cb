"""KVM's binary statistics (KVM_GET_STATS_FD, Documentation/virt/kvm/api.rst "binary stats").

The fd holds a header, a table of descriptors (each followed by its name) and a data block of
u64 values; descriptors and names are read once, the data block on every snapshot with pread.
"""

from __future__ import annotations

import ctypes
import os

from .structs import KvmStatsDesc, KvmStatsHeader

_DESC_SIZE = ctypes.sizeof(KvmStatsDesc)


class StatsReader:
    def __init__(self, fd: int):
        self.fd = fd
        raw = os.pread(fd, ctypes.sizeof(KvmStatsHeader), 0)
        hdr = KvmStatsHeader.from_buffer_copy(raw)
        self.name_size = hdr.name_size
        self.data_offset = hdr.data_offset
        step = _DESC_SIZE + hdr.name_size
        table = os.pread(fd, step * hdr.num_desc, hdr.desc_offset)
        self.fields: list[tuple[str, int, int]] = []  # (name, offset in data, count of u64)
        end = 0
        for i in range(hdr.num_desc):
            base = i * step
            desc = KvmStatsDesc.from_buffer_copy(table, base)
            name = table[base + _DESC_SIZE: base + step].split(b"\0", 1)[0].decode()
            self.fields.append((name, desc.offset, desc.size))
            end = max(end, desc.offset + 8 * desc.size)
        self.data_size = end

    def read(self) -> dict[str, int]:
        """name -> value (histograms and arrays are summed into one figure)."""
        data = os.pread(self.fd, self.data_size, self.data_offset)
        out = {}
        for name, off, count in self.fields:
            if count == 1:
                out[name] = int.from_bytes(data[off:off + 8], "little")
            else:
                out[name] = sum(int.from_bytes(data[off + 8 * i: off + 8 * i + 8], "little")
                                for i in range(count))
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
