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
    files = [p for p in tmp_path.rglob("*.code")]
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
    monkeypatch.setattr(codecache, "DISK_ENTRIES", 8)
    monkeypatch.setattr(codecache, "SHARDS", 2)  # a share of 4 files each
    monkeypatch.setattr(codecache, "DISK_WRITES_PER_PROCESS", 8)
    a = CodeCache(str(tmp_path))
    for i in range(20):
        a.compile_keyed(str(i).encode(), "<x86 t>", lambda: SRC)
    files = lambda: list(tmp_path.rglob("*.code"))  # noqa: E731
    assert len(files()) == 8  # no more writes than allowed per process
    assert {p.parent.name for p in files()} <= {"00", "01"}
    per_shard = lambda: {d.name: len(list(d.glob("*.code"))) for d in tmp_path.iterdir()}  # noqa: E731
    before = per_shard()
    assert max(before.values()) >= 4  # 8 files in 2 subdirectories: one holds its share
    # Another process writes until each subdirectory has been counted once: one that held its
    # share (4) or more is emptied before the first write into it, the others are kept.
    b = CodeCache(str(tmp_path))
    i = 100
    while len(b._checked) < 2:
        b.compile_keyed(str(i).encode(), "<x86 t>", lambda: SRC)
        i += 1
    after = per_shard()
    for name, n in before.items():
        assert after[name] <= (b.writes if n >= 4 else n + b.writes)
        if n >= 4:
            assert after[name] < n
    assert sum(after.values()) <= 8 + 8


def test_reading_never_counts_the_directory(tmp_path, monkeypatch):
    a = CodeCache(str(tmp_path))
    a.compile_keyed(b"k", "<x86 t>", lambda: SRC)
    b = CodeCache(str(tmp_path))
    monkeypatch.setattr(os, "scandir", lambda *_: (_ for _ in ()).throw(AssertionError("scan")))
    assert run(b.compile_keyed(b"k", "<x86 t>", lambda: SRC)) == 42 and b.hits_disk == 1


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


def test_the_first_write_removes_files_of_the_old_flat_layout(tmp_path):
    # Before the directory was split, files lay in its top level; nothing reads them any more.
    old = [tmp_path / "00ff.code", tmp_path / "11ee.rec"]
    for p in old:
        p.write_bytes(b"x")
    keep = tmp_path / "notes.txt"
    keep.write_text("not ours")
    a = CodeCache(str(tmp_path))
    assert run(a.compile(SRC, "<x86 read>")) == 42  # compiles, and writes: the first write
    assert not any(p.exists() for p in old) and keep.exists()
    assert len(list(tmp_path.rglob("*.code"))) == 1  # the new file, in its subdirectory
