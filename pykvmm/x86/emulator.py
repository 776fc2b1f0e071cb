"""The emulator: the decode cache, memory routing and the run loop.

The run loop is the per-instruction hot path, so it is deliberately flat: one dict lookup of a
compiled function by IP, one call, one counter.  Everything unusual (a new or changed
instruction, leaving the range, a refusal, self-modifying code) happens on the miss path, and a
per-run dict (``live``) only ever holds instructions validated in this run, inside [lo, hi).

Stale code is impossible by construction: the global cache maps (linear address, IP) to decoded
instructions *with their bytes*, and an entry is used in a run only after comparing those bytes
with guest memory (the guest ran natively since the last run and may have changed anything).
Within a run only the emulator writes memory; a write that lands on code fetched in this run
clears ``live`` and stops the run right after the writing instruction ("smc").
"""

from __future__ import annotations

import time
from collections import OrderedDict
from types import CodeType
from typing import Any

from ..machine.memory import RAM, ROM
from . import alu, codecache, stops
from .codegen import RC_IO, RC_SHIFT, ROOM_MAX, Unsupported, assemble, gen_insn
from .decoder import MAX_LEN, Insn, decode_bytes
from .state import NSTATE, TF, CpuState
from .stops import Refuse, Stop

# Below this every guest-physical address is plain RAM in every pykvmm memory map (conventional
# memory ends where the legacy video/device hole starts, layout.CONV_RAM_END); compiled code
# inlines accesses under it and sends everything else through the routed slow path.
FAST_RAM_END = 0xA0000
_NO_CODE = 1 << 62
_DEADLINE_STRIDE = 256  # executions between clock reads when a deadline is set
# A run meeting new code stops at a miss once its deadline is this far behind (see run).
COLD_SLACK_NS = 20_000_000
# A basic block holds at most this many instructions (an unrolled polling loop of 16 bytes is
# 114: one dispatch for all of it).  A block runs only when its whole length fits in the room
# left before the budget (and the deadline stride), and its first port IO comes before the IO
# window closes; otherwise the loop runs single instructions, so limits are exact.
MAX_BLOCK = 128
# Tiers: compiling costs about 100-200 us an instruction here, so a block gets MAX_BLOCK
# instructions only where a loop starts (an IP that control went back to: a taken backward
# jump seen by the run loop), and at most SHORT_BLOCK elsewhere.  Otherwise every place a run
# starts (the instruction after each trapped IO) would compile its own long copy of the code
# that follows it.
SHORT_BLOCK = 16
# A block also ends right before a known loop head, so that code running into a loop (a
# routine's prologue) hands over to the loop's own long block.  (Ending a block after a Jcc
# back to its first instruction, to make it a loop block, was tried: a poll's JZ back to
# itself then cut the unrolled print loop into short blocks.)
CUT_LIMIT, CUT_WINDOW = 1, 2  # why a block ended early (Block.cut)
# A block's record on disk (see Emulator.block) is keyed by its IP and this many code bytes (at
# least one whole instruction), and keeps this many candidates (lengths and shapes) there.
RECORD_PREFIX = 16
RECORD_CANDIDATES = 4
LOOP_HEADS = 4096  # loop heads remembered (linear addresses), all forgotten when full
# New blocks are built only when at least this much room is left, and no longer than the room:
# near the end of a budget the run goes on with single instructions instead of compiling a
# block at every IP that would decline to run.
MIN_BLOCK_ROOM = 16
# The decode cache and the block cache each hold at most this many (address, IP) keys by default
# (``Emulator.cache_limit``, the command line's --decode-cache), least recently used dropped
# first: a guest that generates endless distinct code must not grow host memory without bound.
DEFAULT_CACHE_ENTRIES = 4096  # both caches full of random code: about 29 MiB (measured)
RC_LAST = 2 * RC_SHIFT  # where a return code keeps the place of its last IO (codegen.retcode)
# Saved validated-code contexts, one per (CS base, lo, hi) range recently run (LRU).
MAX_CONTEXTS = 64
# Port IO does not end a block, but at most this many instructions may follow the block's last
# IO instruction; blocks are used only when io_window is at least this, so the IO window (which
# restarts at every IO) can never end inside a block.
MAX_TAIL = 6


# Decoded instructions shared by every emulator in the process, keyed by (IP, the up to 15 code
# bytes fetched there), oldest dropped first.  Decoding (capstone and code generation) costs
# about 40 us an instruction here; a guest run again, or the firmware every run boots, finds its
# instructions here.  Templates are never executed: each emulator copies one and compiles its own.
DECODED_ENTRIES = 16384
_DECODED: dict[tuple[int, bytes], Insn] = {}
_INSN_FIELDS = tuple(n for n in Insn.__slots__ if n != "fn")


def _make_unbound_copy():
    """``_unbound_copy(ins)``: a copy of a decoded instruction without its compiled function
    (which is bound to one emulator's namespace).  Written out field by field from Insn's slots
    and compiled once: each new machine copies every template it meets (about 100 for a short
    guest), and plain attribute stores take a fifth of the time of getattr/setattr calls."""
    body = "".join(f"    c.{name} = t.{name}\n" for name in _INSN_FIELDS)
    src = (f"def _unbound_copy(t, new=Insn.__new__, cls=Insn):\n    c = new(cls)\n{body}"
           "    c.fn = None\n    return c\n")
    ns: dict[str, Any] = {"Insn": Insn}
    exec(compile(src, "<emulator._unbound_copy>", "exec"), ns)
    return ns["_unbound_copy"]


_unbound_copy = _make_unbound_copy()


class Block:
    """A compiled basic block: straight-line instructions from ``ip`` up to the first one that
    transfers control, does IO, writes memory or is a string instruction.  Validated as a
    whole: its ``bytes`` must equal guest memory at ``lin``."""

    __slots__ = ("lin", "ip", "end", "bytes", "fn", "count", "cut", "inner")

    def __init__(self, lin: int, ip: int, end: int, code: bytes, fn: Any, count: int,
                 cut: int = 0, inner: tuple[int, ...] = ()):
        self.lin, self.ip, self.end, self.bytes, self.fn, self.count = lin, ip, end, code, fn, count
        self.inner = inner  # linear addresses of its instructions after the first
        # 0: ended by its code; CUT_LIMIT / CUT_WINDOW: by the length asked for, or by the IO
        # window before any port IO (a longer block may be built there later)
        self.cut = cut


def _usable(end: int, cut: int, count: int, code: bytes, inner, lin: int, hi: int, limit: int,
            wroom: int, ram, heads) -> bool:
    """Whether a block built earlier (kept in memory, or recorded on disk by an earlier process)
    can run at ``lin`` now: it ends (IP ``end``) within ``hi``; if it was cut short by an
    instruction limit or the IO window, that limit was no larger than the one asked now; guest
    memory still holds its bytes; and no loop head has since appeared inside it (``inner``:
    the linear addresses of its instructions after the first)."""
    return (end <= hi and (not cut or count >= (limit if cut == CUT_LIMIT else min(limit, wroom)))
            and ram[lin:lin + len(code)] == code and not any(a in heads for a in inner))


class Emulator:
    """Real-mode x86 emulator over guest memory ``mem`` (GuestMemory), the port bus ``pio`` and
    the MMIO bus ``mmio`` (each with read/write/claims, as pykvmm.machine.bus)."""

    def __init__(self, mem: Any, pio: Any, mmio: Any):
        for name, obj, attrs in (("mem", mem, ("ram", "kind")), ("pio", pio, ("read", "write")),
                                 ("mmio", mmio, ("read", "write", "claims"))):
            missing = [a for a in attrs if not hasattr(obj, a)]
            if missing:
                raise TypeError(f"{name} must provide {', '.join(attrs)}; {obj!r} lacks {missing}")
        if mem.kind(0, FAST_RAM_END) != RAM or len(mem.ram) < FAST_RAM_END:
            raise ValueError(f"the emulator needs RAM over [0, {FAST_RAM_END:#x}) (conventional "
                             f"memory), which compiled code accesses directly")
        self.mem = mem
        self.pio = pio
        self.mmio = mmio
        self._s = [0] * NSTATE
        self._io = [0]          # MMIO accesses performed (compiled code compares it)
        self._cache: dict[tuple[int, int], list[Insn]] = {}
        self._bcache: dict[tuple[int, int], list[Block]] = {}
        self.cache_limit = DEFAULT_CACHE_ENTRIES  # keys per cache (LRU)
        self._live: dict[int, Any] = {}    # this run: IP -> single-instruction function
        self._blocks: dict[int, Any] = {}  # this run: IP -> block (or single) function
        self._code: list[tuple[int, int]] = []  # (linear start, end) fetched in this run
        # _stopq[0]: 0 run on; 1 self-modifying code was written; 2 stop was requested.
        # Compiled blocks read it after each IO instruction (a device may ask for a stop).
        self._stopq = [0]
        # What the last run validated (see run): code segment base, IP extent, byte snapshots.
        self._span_cs = -1
        self._ip_lo = 0x10000
        self._ip_hi = 0
        self._spans: list[tuple[int, int, bytes]] = []
        self._ctx_key: tuple[int, int, int] | None = None
        self._heads: set[int] = set()  # loop heads (linear addresses): see SHORT_BLOCK
        self._ctxs: OrderedDict = OrderedDict()  # other ranges' saved contexts (_switch_context)
        self.compiled = 0  # instructions compiled so far (tests and stats)
        # Decodes at an address whose cached instructions no longer match guest memory: code
        # that changed (the engine's profitability rule tells changing code from new code).
        self.replaced = 0
        self.use_blocks = True  # False: one instruction per dispatch (the reference behaviour)
        self.code_cache = codecache.shared  # compiled code objects, by source (codecache.py)
        self._ns = self._namespace()

    # -- memory routing (slow paths; compiled code inlines RAM below FAST_RAM_END) ----------------

    def _namespace(self) -> dict[str, Any]:
        mem, mmio, io = self.mem, self.mmio, self._io
        ram = mem.ram
        kind = mem.kind
        size = mem.size if hasattr(mem, "size") else len(ram)

        def routed_read(a: int, n: int) -> int:
            k = kind(a, n)
            if (k == RAM or k == ROM) and a + n <= size:
                return int.from_bytes(ram[a:a + n], "little")
            if mmio.claims(a, n):
                io[0] += 1
                return mmio.read(a, n)
            raise Refuse(stops.FAULT, f"read of {n} bytes at unbacked {a:#x}")

        def routed_write(a: int, n: int, v: int) -> None:
            if kind(a, n) == RAM and a + n <= size:
                self._ram_write(a, n, v)
                return
            if mmio.claims(a, n):
                io[0] += 1
                mmio.write(a, n, v)
                return
            raise Refuse(stops.FAULT, f"write of {n} bytes at {a:#x} (ROM or unbacked)")

        def chk(a: int, n: int, write: bool) -> None:
            """Refuse now if an n-byte access at a would be refused later (no effects)."""
            k = kind(a, n)
            if k == RAM or (k == ROM and not write) or mmio.claims(a, n):
                return
            raise Refuse(stops.FAULT, f"access of {n} bytes at {a:#x}")

        def wblk(a: int, vals: list[int], n: int) -> None:
            if kind(a, n * len(vals)) != RAM:
                raise Refuse(stops.FAULT, f"block write at {a:#x}")
            for i, v in enumerate(vals):
                self._ram_write(a + i * n, n, v)

        def rblk(a: int, count: int, n: int) -> list[int]:
            k = kind(a, n * count)
            if k != RAM and k != ROM:
                raise Refuse(stops.FAULT, f"block read at {a:#x}")
            return [int.from_bytes(ram[a + i * n:a + i * n + n], "little") for i in range(count)]

        pio = self.pio
        pr8 = getattr(pio, "byte_readers", None)
        pw8 = getattr(pio, "byte_writers", None)
        pc = getattr(pio, "op_counts", None)  # compiled IN/OUT count here (see PortBus)
        if pr8 is None or pw8 is None or pc is None:
            # another bus: the same calls through its read/write, which count themselves
            pr8 = [lambda port: pio.read(port, 1)] * 0x10000
            pw8 = [lambda port, value: pio.write(port, 1, value)] * 0x10000
            pc = [0] * 0x10000
        return {
            "s": self._s, "ram": ram, "io": io, "stopq": self._stopq, "cl": _NO_CODE, "ch": 0,
            "rb": lambda a: routed_read(a, 1), "rw": lambda a: routed_read(a, 2),
            "rd": lambda a: routed_read(a, 4),
            "wb": lambda a, v: routed_write(a, 1, v), "ww": lambda a, v: routed_write(a, 2, v),
            "wd": lambda a, v: routed_write(a, 4, v),
            "chk": chk, "wblk": wblk, "rblk": rblk, "ifb": int.from_bytes,
            "pio_read": self.pio.read, "pio_write": self.pio.write,
            "pr8": pr8, "pw8": pw8, "pc": pc,
            "Refuse": Refuse, "FAULT": stops.FAULT, "TRAP_FLAG": stops.TRAP_FLAG,
            "IRQ_WINDOW": stops.IRQ_WINDOW,
            "SZP8": alu.SZP8, "SZP16": alu.SZP16, "PAR": alu.PAR, "shift": alu.shift,
            "shld": alu.shld, "shrd": alu.shrd, "mul": alu.mul, "imul_trunc": alu.imul_trunc,
            "div": alu.div, "bsf": alu.bsf, "bsr": alu.bsr,
        }

    def _ram_write(self, a: int, n: int, v: int) -> None:
        """A RAM write from the slow path: notices writes into code fetched in this run."""
        self.mem.ram[a:a + n] = (v & ((1 << (8 * n)) - 1)).to_bytes(n, "little")
        ns = self._ns
        if a + n > ns["cl"] and a < ns["ch"]:
            for lo, hi in self._code:
                if a + n > lo and a < hi:
                    # Self-modifying code: the write is done; drop every validated instruction
                    # so the next fetch takes the miss path, which stops the run ("smc").
                    self._stopq[0] = 1
                    self._live.clear()
                    self._blocks.clear()
                    break

    def _switch_context(self, key: tuple[int, int, int]) -> None:
        """Keep the validated code of the last few (CS base, lo, hi) ranges side by side.

        The coalescing engine runs many short blocks, each at its own site: with one saved
        context, every run at a different site than the last had to look up and validate each
        instruction again.  A saved context is still checked byte for byte before reuse (its
        spans), so keeping it can never run stale code.  The number kept is bounded (LRU)."""
        ns = self._ns
        ctxs = self._ctxs
        if self._ctx_key is not None:
            ctxs[self._ctx_key] = (self._live, self._blocks, self._code, self._spans,
                                   self._span_cs, self._ip_lo, self._ip_hi, ns["cl"], ns["ch"])
            ctxs.move_to_end(self._ctx_key)
            while len(ctxs) > MAX_CONTEXTS:
                ctxs.popitem(last=False)
        saved = ctxs.pop(key, None)
        if saved is None:
            self._live, self._blocks, self._code = {}, {}, []
            self._spans, self._span_cs, self._ip_lo, self._ip_hi = [], -1, 0x10000, 0
            ns["cl"], ns["ch"] = _NO_CODE, 0
        else:
            (self._live, self._blocks, self._code, self._spans, self._span_cs, self._ip_lo,
             self._ip_hi, ns["cl"], ns["ch"]) = saved
        self._ctx_key = key

    def request_stop(self) -> None:
        """Stop the current run right after the instruction now executing (for a device
        callback during IO: a debug-exit write, an interrupt becoming deliverable).  The run
        returns reason "requested" at that instruction boundary, also inside a compiled block."""
        self._stopq[0] = 2

    @property
    def _smc(self) -> bool:
        return self._stopq[0] != 0

    @_smc.setter
    def _smc(self, value: bool) -> None:
        # kept for callers that set it directly: any true value stops like a request
        self._stopq[0] = 1 if value else 0

    def _snapshot(self) -> None:
        """Merge the code ranges fetched so far and keep their bytes, for the next run's check."""
        ram = self.mem.ram
        spans: list[tuple[int, int, bytes]] = []
        cur_a = cur_b = -1
        for a, b in sorted(self._code):
            if a <= cur_b:
                cur_b = max(cur_b, b)
                continue
            if cur_b > cur_a:
                spans.append((cur_a, cur_b, bytes(ram[cur_a:cur_b])))
            cur_a, cur_b = a, b
        if cur_b > cur_a:
            spans.append((cur_a, cur_b, bytes(ram[cur_a:cur_b])))
        self._spans = spans

    # -- decoding and the cache -------------------------------------------------------------------

    def _fetch(self, lin: int, ip: int) -> bytes:
        """Up to 15 code bytes at CS:ip, stopping at the segment limit and at the end of RAM/ROM
        (an instruction that needs more bytes will not decode, and is refused as a fault)."""
        n = min(MAX_LEN, 0x10000 - ip)
        kind = self.mem.kind
        while n > 0:
            k = kind(lin, n)
            if k == RAM or k == ROM:
                return bytes(self.mem.ram[lin:lin + n])
            n -= 1
        return b""

    def lookup(self, cs_base: int, ip: int) -> Insn:
        """The decoded (and, when supported, compiled) instruction at cs_base:ip, validated
        against the bytes in guest memory now."""
        lin = cs_base + ip
        key = (lin, ip)
        ram = self.mem.ram
        cache = self._cache
        entries = cache.get(key)
        if entries:
            for ins in entries:
                if ram[lin:lin + ins.length] == ins.bytes:
                    del cache[key]  # most recently used last (dicts keep insertion order)
                    cache[key] = entries
                    return ins
        if entries:
            self.replaced += 1  # known address, other bytes now
        code = self._fetch(lin, ip)
        if not code:
            ins = Insn()
            ins.ip, ins.bytes, ins.length = ip, b"", 0
            return ins.refuse(stops.FAULT, f"instruction fetch from unbacked {lin:#x}")
        dkey = (ip, code)
        tmpl = _DECODED.get(dkey)
        if tmpl is not None:
            # Decoded before, by this emulator or another one in the process (the same firmware
            # and guests run again and again): the decode depends only on these bytes and IP.
            # The copy gets its own compiled function, bound to this emulator's namespace.
            ins = _unbound_copy(tmpl)
        else:
            ins = decode_bytes(code, ip)
            if ins.supported:
                try:
                    gen = gen_insn(ins)
                except Unsupported as u:
                    ins.refuse(u.reason, u.detail or ins.mnemonic)
                else:
                    ins.gen = gen
                    # Compiling costs ~1 ms (assemble + compile); scanning and block building
                    # need only ``gen``, so the single-instruction function is compiled on
                    # first use (_single).
            if len(_DECODED) >= DECODED_ENTRIES:
                try:
                    del _DECODED[next(iter(_DECODED))]  # the oldest
                except (KeyError, StopIteration, RuntimeError):
                    pass  # another VM's thread got there first
            # The template is a copy: ``ins`` gets this emulator's compiled function later,
            # and a template holding it would keep this VM's namespace and memory alive.
            _DECODED[dkey] = _unbound_copy(ins)
        if entries is None:
            if len(cache) >= self.cache_limit:
                del cache[next(iter(cache))]  # the least recently used key
            entries = cache[key] = []
        elif len(entries) >= 4:
            del entries[0]  # code that keeps changing: keep the newest few versions
        entries.append(ins)
        return ins

    def _single(self, ins: Insn) -> Any:
        """The compiled function of one instruction, compiled the first time it is needed."""
        gen = ins.gen
        ins.fn = self._exec(b"1" + ins.ip.to_bytes(4, "little") + ins.bytes,
                            f"<x86 {ins.ip:04x}: {ins.mnemonic}>", lambda: assemble([gen]))
        return ins.fn

    def _exec(self, what: bytes, name: str, make_source) -> Any:
        """Execute the code object for make_source() (cached by ``what``, the bytes and IPs
        that determine it: see codecache) in the emulator's namespace; return its ``f``."""
        loc: dict[str, Any] = {}
        exec(self.code_cache.compile_keyed(what, name, make_source), self._ns, loc)
        self.compiled += 1
        return loc["f"]

    def block(self, cs_base: int, ip: int, hi: int, limit: int = MAX_BLOCK,
              wroom: int = ROOM_MAX) -> Block | None:
        """The basic block starting at cs_base:ip and ending below ``hi``, from the cache when
        its bytes still match, else newly compiled with at most ``limit`` instructions and, when
        no port IO comes first, at most ``wroom`` (a longer IO-free stretch could not run in
        the IO window left); None when it would hold one instruction."""
        lin = cs_base + ip
        key = (lin, ip)
        ram = self.mem.ram
        bcache = self._bcache
        heads = self._heads
        entries = bcache.get(key)
        if entries:
            for b in entries:
                if _usable(b.end, b.cut, b.count, b.bytes, b.inner, lin, hi, limit, wroom,
                           ram, heads):
                    del bcache[key]  # most recently used last
                    bcache[key] = entries
                    return b
        # Not in memory: a block built here by an earlier process, from its record (codecache),
        # without decoding a single instruction.  A record is keyed by the IP and the first
        # code bytes, and holds each candidate's whole bytes, shape and code object; a candidate
        # is taken under the same conditions as a block from memory, and only where guest
        # memory holds those bytes in RAM or ROM now.  Blocks depend on nothing but their IP,
        # bytes and shape (the code segment's base is not in the generated code).
        rkey = ip.to_bytes(4, "little") + bytes(ram[lin:lin + RECORD_PREFIX])
        rec = self.code_cache.load_record(rkey)
        if rec is not None:
            kind = self.mem.kind
            for cand in rec:
                try:
                    c_bytes, _, c_count, c_cut, c_inner, c_code = cand
                    n = len(c_bytes)
                    c_inner = tuple(lin + o for o in c_inner)
                    ok = (isinstance(c_code, CodeType) and isinstance(c_bytes, bytes) and 0 < n
                          and _usable(ip + n, c_cut, c_count, c_bytes, c_inner, lin, hi, limit,
                                      wroom, ram, heads)
                          and kind(lin, n) in (RAM, ROM))
                except (TypeError, ValueError):
                    ok = False  # not a record this version wrote: ignored
                if ok:
                    loc: dict[str, Any] = {}
                    exec(c_code, self._ns, loc)
                    self.compiled += 1
                    b = Block(lin, ip, ip + n, c_bytes, loc["f"], c_count, c_cut, c_inner)
                    self._keep_block(key, entries, b)
                    return b
        gens = []
        inner = []
        at = ip
        tail = -1  # instructions since the last IO instruction (-1: no IO yet)
        cut = 0
        while at < hi:
            if gens and cs_base + at in heads:
                break  # a loop starts here: its own block runs it
            if len(gens) >= limit:
                cut = CUT_LIMIT
                break
            if tail < 0 and len(gens) >= wroom:
                cut = CUT_WINDOW
                break
            ins = self.lookup(cs_base, at)
            if not ins.supported:
                break
            if gens:
                inner.append(cs_base + at)
            gens.append(ins.gen)
            at += ins.length
            if ins.gen.term:
                break
            if ins.gen.io:
                tail = 0
            elif tail >= 0:
                tail += 1
                if tail >= MAX_TAIL:
                    break
        # A block whose last instruction jumps back to its start (a loop, a poll) iterates
        # inside one call (see codegen.assemble); a one-instruction loop (LOOP $, JMP $) too.
        loop_ip = ip if gens and gens[-1].target == ip else -1
        if len(gens) < 2 and loop_ip < 0:
            return None
        # The block is fixed by its bytes, its first IP and its shape (loop or not).
        code = bytes(ram[lin:cs_base + at])
        what = b"B" + ip.to_bytes(4, "little") + (b"L" if loop_ip >= 0 else b"-") + code
        co = self.code_cache.compile_keyed(what, f"<x86 block {ip:04x}-{at:04x}>",
                                           lambda: assemble(gens, loop_ip), disk=False)
        loc = {}
        exec(co, self._ns, loc)
        self.compiled += 1
        b = Block(lin, ip, at, code, loc["f"], len(gens), cut, tuple(inner))
        self._keep_block(key, entries, b)
        cand = (code, loop_ip >= 0, len(gens), cut, tuple(a - lin for a in inner), co)
        older = tuple(c for c in rec or ()
                      if isinstance(c, tuple) and len(c) == len(cand)
                      and isinstance(c[5], CodeType) and c[:5] != cand[:5])
        self.code_cache.store_record(rkey, older[-(RECORD_CANDIDATES - 1):] + (cand,))
        return b

    def _keep_block(self, key: tuple[int, int], entries: list[Block] | None, b: Block) -> None:
        bcache = self._bcache
        if entries is None:
            if len(bcache) >= self.cache_limit:
                del bcache[next(iter(bcache))]
            entries = bcache[key] = []
        elif len(entries) >= 4:
            del entries[0]
        entries.append(b)

    def decode(self, cpu_or_cs_base: CpuState | int, ip: int) -> Insn:
        """The instruction at CS:ip (CS base from a CpuState or given), through the cache."""
        cs_base = cpu_or_cs_base if isinstance(cpu_or_cs_base, int) else cpu_or_cs_base.s[17]
        return self.lookup(cs_base, ip)

    # -- the run loop -----------------------------------------------------------------------------

    def run(self, cpu: CpuState, *, max_insns: int, lo: int = 0, hi: int = 0x10000,
            io_window: int | None = None, deadline_ns: int | None = None) -> Stop:
        """Emulate from cpu's CS:IP; stop before an instruction whose IP is outside [lo, hi),
        after ``max_insns`` executions, after ``io_window`` executions without IO, at
        ``deadline_ns`` (time.monotonic_ns), or before anything refused.  ``cpu`` is updated in
        place and is always at an instruction boundary."""
        if max_insns < 0:
            raise ValueError(f"max_insns must be >= 0, not {max_insns}")
        if not 0 <= lo <= hi <= 0x10000:
            raise ValueError(f"need 0 <= lo <= hi <= 0x10000, not lo={lo:#x} hi={hi:#x}")
        if io_window is not None and io_window <= 0:
            raise ValueError(f"io_window must be a positive integer, not {io_window}")
        if not cpu.plain:
            return Stop(stops.MODE, detail="not plain real mode")
        s = self._s
        s[:] = cpu.s
        if s[9] & TF:
            return Stop(stops.TRAP_FLAG)
        ns = self._ns
        cs_base = s[17]
        ram = self.mem.ram
        # Reuse what the previous run validated when it is the same code segment, its code lies
        # inside [lo, hi) and every byte of it is unchanged (a few slice compares: the guest ran
        # natively in between and may have rewritten anything).  Otherwise start afresh.
        key = (cs_base, lo, hi)
        if key != self._ctx_key:
            self._switch_context(key)
        reuse = (cs_base == self._span_cs and lo <= self._ip_lo and self._ip_hi <= hi)
        if reuse:
            for a, b, snap in self._spans:
                if ram[a:b] != snap:
                    reuse = False
                    break
        code = self._code
        live = self._live
        blocks = self._blocks
        if not reuse:
            ns["cl"] = _NO_CODE
            ns["ch"] = 0
            code.clear()
            live.clear()
            blocks.clear()
            self._spans = []
            self._span_cs = cs_base
            self._ip_lo = 0x10000
            self._ip_hi = 0
        stopq = self._stopq
        stopq[0] = 0
        grown = False
        bget = blocks.get
        sget = live.get
        heads = self._heads
        rc_io = RC_IO
        n = 0
        ios = 0
        reason = ""
        detail = ""
        io_limit = io_window if io_window is not None else max_insns
        # ``hard``: where the run must stop (the budget or the IO window), exactly: every
        # compiled unit is told the room left before it and never runs past it.  ``limit``:
        # the next count at which to look at the clock (every ``stride`` instructions with a
        # deadline), or ``hard``; a unit may run past it, by at most ``stride`` instructions.
        stride = ROOM_MAX
        if deadline_ns is not None:
            if time.monotonic_ns() >= deadline_ns:
                return Stop(stops.DEADLINE)
            stride = _DEADLINE_STRIDE
        hard = min(max_insns, io_limit)
        win = io_window if io_window is not None else ROOM_MAX
        check = stride
        limit = min(hard, check)
        # With an IO window shorter than a block's tail after IO, only single instructions
        # are dispatched.
        blocks_ok = self.use_blocks and (io_window is None or io_window >= MAX_TAIL)
        if not blocks_ok:
            bget = sget
        try:
            while True:
                if n >= limit:
                    if n >= max_insns:
                        reason = stops.BUDGET
                        break
                    if n >= io_limit:
                        reason = stops.EXTENT
                        break
                    if deadline_ns is not None and time.monotonic_ns() >= deadline_ns:
                        reason = stops.DEADLINE
                        break
                    check = n + stride
                    limit = min(hard, check)
                # ``room``: what the budget (and the deadline stride) leaves, exactly; ``wroom``:
                # how many more instructions may run before port IO must come.  A block checks
                # both against its length and the place of its first IO (codegen.assemble).
                room = max_insns - n
                if room > stride:
                    room = stride
                wroom = io_limit - n
                at = s[8]
                f = bget(at)
                if f is None:
                    # -- the miss path: validate, compile, install ------------------------------
                    ip = at
                    if stopq[0]:
                        reason = stops.SMC if stopq[0] == 1 else stops.REQUESTED
                        break
                    if not lo <= ip < hi:
                        reason = stops.LEFT_RANGE
                        break
                    if deadline_ns is not None and time.monotonic_ns() >= deadline_ns + COLD_SLACK_NS:
                        # Cold code compiles at 100-200 us an instruction here (a few ms a
                        # block, more for a long one at a loop head), so a run through much new
                        # code could overrun its deadline by far more than ``stride``
                        # instructions take (first runs of 50-260 ms were seen): bound that too,
                        # with a slack that lets an ordinary cold block finish (exit counts stay
                        # the same from host to host).
                        reason = stops.DEADLINE
                        break
                    lin = cs_base + ip
                    build = blocks_ok and room >= MIN_BLOCK_ROOM
                    # A block first: from memory or a record it needs no decoding at all (an
                    # instruction it cannot start with leaves it None, and is refused below).
                    b = None
                    if build:
                        most = MAX_BLOCK if lin in heads else SHORT_BLOCK
                        b = self.block(cs_base, ip, hi, min(most, room), wroom)
                    if b is not None:
                        f = blocks[ip] = b.fn
                        end = lin + len(b.bytes)
                    else:
                        f = live.get(ip)
                        if f is None:
                            ins = self.lookup(cs_base, ip)
                            if not ins.supported:
                                reason, detail = ins.reason, ins.detail
                                break
                            end = lin + ins.length
                            f = live[ip] = ins.fn or self._single(ins)
                        else:
                            end = lin
                        if build:
                            blocks[ip] = f
                    if end > lin:
                        # code fetched in this run: a write into it is self-modifying code
                        grown = True
                        code.append((lin, end))
                        if lin < ns["cl"]:
                            ns["cl"] = lin
                        if end > ns["ch"]:
                            ns["ch"] = end
                        if ip < self._ip_lo:
                            self._ip_lo = ip
                        if end - cs_base > self._ip_hi:
                            self._ip_hi = end - cs_base
                r = f(room, wroom, win)
                if r == 0:  # the block does not fit in the room left: one instruction only
                    g = live.get(s[8])
                    if g is None:  # not compiled yet (see the cold-code rule above)
                        ins = self.lookup(cs_base, s[8])
                        g = live[s[8]] = ins.fn or self._single(ins)
                    r = g(room)
                if s[8] <= at and cs_base + s[8] not in heads:
                    # control went back: a loop starts there, and gets a long block
                    if len(heads) >= LOOP_HEADS:
                        heads.clear()
                    heads.add(cs_base + s[8])
                    # blocks are rebuilt from there, and blocks running through it end
                    # before it (Emulator.block): a rare event, once per loop
                    blocks.clear()
                if r < rc_io:  # no IO (see codegen.retcode)
                    n += r
                else:
                    ios += (r >> RC_SHIFT) & ROOM_MAX
                    if io_window is not None:
                        io_limit = n + (r >> RC_LAST) + io_window
                        hard = io_limit if io_limit < max_insns else max_insns
                        limit = hard if hard < check else check
                    n += r & ROOM_MAX
                    if stopq[0]:  # a device asked for a stop (see request_stop)
                        reason = stops.SMC if stopq[0] == 1 else stops.REQUESTED
                        break
        except Refuse as r_:
            reason, detail = r_.reason, r_.detail
            n += r_.done
            ios += r_.ios
        finally:
            cpu.s[:] = s
            if stopq[0] == 1:
                self._span_cs = -1  # everything is revalidated next time
            elif grown:
                self._snapshot()
        return Stop(reason, n, ios, detail)
