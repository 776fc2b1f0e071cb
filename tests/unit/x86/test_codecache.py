"""The emulator's cache of compiled code objects (pykvmm/x86/codecache.py)."""

from __future__ import annotations

import os

from pykvmm.x86 import codecache
from pykvmm.x86.codecache import CodeCache

SRC = "def f(room=16):\n    return room + 1\n"


def run(code) -> int:
    loc: dict = {}
    exec(code, {}, loc)
    return loc["f"](41)


def test_memory_then_disk_then_recompile_after_corruption(tmp_path):
    made = []

    def make():
        made.append(1)
        return SRC

    a = CodeCache(str(tmp_path))
    assert run(a.compile_keyed(b"bytes", "<x86 t>", make)) == 42 and made == [1]
    assert run(a.compile_keyed(b"bytes", "<x86 t>", make)) == 42 and made == [1]  # memory
    files = [p for p in tmp_path.iterdir() if p.suffix == ".code"]
    assert len(files) == 1
    b = CodeCache(str(tmp_path))  # another process, say
    assert run(b.compile_keyed(b"bytes", "<x86 t>", make)) == 42 and made == [1]  # disk
    assert (b.hits_disk, b.compiles) == (1, 0)
    files[0].write_bytes(b"\x00garbage")
    c = CodeCache(str(tmp_path))
    assert run(c.compile_keyed(b"bytes", "<x86 t>", make)) == 42 and made == [1, 1]
    # other bytes, or another name, are another key
    c.compile_keyed(b"other", "<x86 t>", make)
    c.compile_keyed(b"bytes", "<x86 u>", make)
    assert len(made) == 4


def test_disk_cache_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(codecache, "DISK_ENTRIES", 5)
    monkeypatch.setattr(codecache, "DISK_WRITES_PER_PROCESS", 8)
    a = CodeCache(str(tmp_path))
    for i in range(20):
        a.compile_keyed(str(i).encode(), "<x86 t>", lambda: SRC)
    count = lambda: sum(1 for p in tmp_path.iterdir() if p.suffix == ".code")  # noqa: E731
    assert count() == 8  # no more writes than allowed per process
    CodeCache(str(tmp_path)).compile_keyed(b"x", "<x86 t>", lambda: SRC)
    assert count() == 1  # more than DISK_ENTRIES found at start: emptied first


def test_memory_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(codecache, "MEMORY_ENTRIES", 3)
    a = CodeCache(disk=False)
    for i in range(10):
        a.compile_keyed(str(i).encode(), "<x86 t>", lambda: SRC)
    assert len(a) == 3 and a.dir is None and not list(tmp_path.iterdir())


def test_environment_turns_the_disk_part_off(monkeypatch, tmp_path):
    monkeypatch.setenv("PYKVMM_CODE_CACHE", "off")
    assert CodeCache().dir is None
    monkeypatch.delenv("PYKVMM_CODE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert CodeCache().dir.startswith(os.path.join(str(tmp_path), "pykvmm", "code-"))
