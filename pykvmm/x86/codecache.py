"""A cache of compiled code objects for the emulator's generated functions, in memory and on disk.

Compiling one generated block costs about 1 ms on this host (``compile()`` of a few kilobytes of
source), the price of a hundred or more exits.  The same source comes back again and again:
every run boots the same firmware, a guest is run many times, several VMs in one process run the
same code.  So code objects are kept by a digest of (source, name):

* in memory, for the life of the process, least recently used dropped beyond ``MEMORY_ENTRIES``;
* on disk, one marshal file per digest under ``$XDG_CACHE_HOME/pykvmm/code-<python>/XX/`` (or
  ``~/.cache``; XX is the digest's first byte), so a later run of the same code loads it
  (~50 us) instead of compiling it.

Beside code objects it keeps *records* (``load_record``/``store_record``): small marshal-able
tuples the emulator derives from guest bytes, such as a compiled block's shape together with
its code object, so that a later process need not even decode the instructions again (decoding
and generating one costs 10-20 us here; a fresh process running op32 under trace decoded 54
instructions, 1.1 ms, in a 13 ms run).

The key is the generated source itself, so nothing stale can be loaded: different guest bytes
or a different code generator give different source, and the marshal format is the Python
version's (part of the directory name).  Code objects hold no globals: the emulator supplies its
own namespace when it executes one.

Bounds (the guest is untrusted and may generate endless distinct code): at most
``DISK_ENTRIES`` files, spread over ``SHARDS`` subdirectories; before a process first writes
into a subdirectory it counts that one, and empties it when it holds its share or more; a
process writes at most ``DISK_WRITES_PER_PROCESS`` new files.  Counting one subdirectory of at
most a hundred files costs tens of microseconds; counting one flat directory of 16,000 files
cost 17 ms here, inside the run that first compiled something (cmos_pairs' whole run is 18 ms).  ``PYKVMM_CODE_CACHE=off`` turns
the disk part off (memory only); any disk error does the same for the rest of the process.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
import threading
from collections import OrderedDict
from types import CodeType
from typing import Any

MEMORY_ENTRIES = 16384
DISK_ENTRIES = 20000
SHARDS = 256  # subdirectories, by the digest's first byte
DISK_WRITES_PER_PROCESS = 4000


def _default_dir() -> str | None:
    if os.environ.get("PYKVMM_CODE_CACHE", "").lower() in ("off", "0", "no"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    tag = f"{sys.implementation.cache_tag}-{sys.version_info.major}.{sys.version_info.minor}"
    return os.path.join(base, "pykvmm", f"code-{tag}")


class CodeCache:
    def __init__(self, directory: str | None = None, disk: bool = True):
        self._mem: OrderedDict[bytes, Any] = OrderedDict()  # code objects and records
        self._lock = threading.Lock()  # --vms runs one emulator per thread
        self.dir = (directory or _default_dir()) if disk else None
        self._checked: set[str] = set()  # subdirectories counted by this process
        self.writes = 0
        self.hits_memory = self.hits_disk = self.compiles = self.record_hits = 0

    def _prepare_shard(self, shard: str) -> bool:
        """Create a subdirectory, and empty it when it holds its share of DISK_ENTRIES or more
        (once per process and subdirectory, before the first write into it).  Before its
        first one, a process also removes the files an older pykvmm left in the top directory,
        before it was split (nothing reads them, and nothing else would remove them)."""
        first = not self._checked
        self._checked.add(shard)
        try:
            os.makedirs(shard, exist_ok=True)
            if first:
                for e in os.scandir(self.dir):
                    if e.name.endswith((".code", ".rec")) and e.is_file(follow_symlinks=False):
                        try:
                            os.unlink(e.path)
                        except OSError:
                            pass
            names = [e.name for e in os.scandir(shard) if e.name.endswith((".code", ".rec"))]
            if len(names) >= max(1, DISK_ENTRIES // SHARDS):
                for name in names:
                    try:
                        os.unlink(os.path.join(shard, name))
                    except OSError:
                        pass
            return True
        except OSError:
            self.dir = None
            return False

    def compile(self, source: str, name: str) -> CodeType:
        """``compile(source, name, "exec")``, from the cache when it holds it."""
        key = hashlib.blake2b(f"{name}\0{source}".encode(), digest_size=16).digest()
        return self._get(key, name, lambda: source)

    def compile_keyed(self, what: bytes, name: str, make_source, disk: bool = True) -> CodeType:
        """The code object for ``make_source()``, cached by ``what``: bytes that determine the
        source completely (the emulator gives the guest code's bytes and IP and the block's
        shape).  The generator's own version is part of the key (GENERATOR), so a changed code
        generator never meets code generated by an older one.  On a hit the source is not even
        generated: assembling it costs about as much as compiling it.  ``disk=False``: memory
        only (the caller keeps the code object on disk in a record of its own)."""
        key = hashlib.blake2b(GENERATOR + name.encode() + b"\0" + what, digest_size=16).digest()
        return self._get(key, name, make_source, disk)

    def _path(self, key: bytes, suffix: str) -> tuple[str, str]:
        shard = os.path.join(self.dir, "%02x" % (key[0] % SHARDS))
        return shard, os.path.join(shard, key.hex() + suffix)

    def _write(self, shard: str, path: str, data: bytes) -> None:
        """Write one file atomically, within the per-process budget and the subdirectory's
        bound; any error turns the disk part off for the rest of the process."""
        if (self.dir is None or self.writes >= DISK_WRITES_PER_PROCESS
                or not (shard in self._checked or self._prepare_shard(shard))):
            return
        self.writes += 1
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # readers never see a partial file
        except OSError:
            self.dir = None
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def _record_key(self, what: bytes) -> bytes:
        return hashlib.blake2b(GENERATOR + b"record\0" + what, digest_size=16).digest()

    def _recall(self, key: bytes):
        """The object kept in memory under ``key`` (most recently used now), or None."""
        with self._lock:
            obj = self._mem.get(key)
            if obj is not None:
                self._mem.move_to_end(key)
            return obj

    @staticmethod
    def _read(path: str):
        """The object marshalled in ``path``, or None when there is none; an unreadable or
        truncated file is removed (it is written again)."""
        try:
            with open(path, "rb") as f:
                return marshal.loads(f.read())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError, EOFError, TypeError):
            try:
                os.unlink(path)
            except OSError:
                pass
            return None

    def load_record(self, what: bytes):
        """The record stored for ``what`` (bytes that determine it), from memory or disk, or
        None.  A record is only a hint the caller validates against guest memory."""
        key = self._record_key(what)
        rec = self._recall(key)
        if rec is None and self.dir is not None:
            rec = self._read(self._path(key, ".rec")[1])
            if not isinstance(rec, tuple):
                return None
            self._remember(key, rec)
        if rec is not None:
            self.record_hits += 1
        return rec

    def store_record(self, what: bytes, rec: tuple) -> None:
        """Keep ``rec`` (a tuple marshal can write: numbers, bytes, tuples, code objects) for
        ``what``, in memory and on disk."""
        key = self._record_key(what)
        self._remember(key, rec)
        if self.dir is not None:
            try:
                data = marshal.dumps(rec)
            except ValueError:
                return
            self._write(*self._path(key, ".rec"), data)

    def _get(self, key: bytes, name: str, make_source, disk: bool = True) -> CodeType:
        code = self._recall(key)
        if code is not None:
            self.hits_memory += 1
            return code
        path = shard = None
        if self.dir is not None and disk:
            shard, path = self._path(key, ".code")
            code = self._read(path)
            if isinstance(code, CodeType):
                self.hits_disk += 1
                self._remember(key, code)
                return code
        code = compile(make_source(), name, "exec")
        self.compiles += 1
        self._remember(key, code)
        if path is not None:
            self._write(shard, path, marshal.dumps(code))
        return code

    def _remember(self, key: bytes, code) -> None:
        with self._lock:
            self._mem[key] = code
            if len(self._mem) > MEMORY_ENTRIES:
                self._mem.popitem(last=False)

    def __len__(self) -> int:
        return len(self._mem)


def _generator_version() -> bytes:
    """A digest of everything that shapes generated source and records: the code generator's,
    the decoder's and the emulator's own files, the instruction tables, capstone's version,
    Python's."""
    h = hashlib.blake2b(digest_size=16)
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("codegen.py", "decoder.py", "state.py", "stops.py", "codecache.py",
                 "emulator.py"):  # emulator.py: how blocks are cut, and their records' form
        try:
            with open(os.path.join(here, name), "rb") as f:
                h.update(f.read())
        except OSError:
            h.update(os.urandom(16))  # unreadable: never share code with another version
    try:
        import capstone

        h.update(repr(capstone.cs_version()).encode())
    except Exception:
        pass
    h.update(sys.version.encode())
    return h.digest()


GENERATOR = _generator_version()

# One cache per process, shared by every emulator (several VMs, repeated runs).
shared = CodeCache()
