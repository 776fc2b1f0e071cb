"""The virtualization event dispatcher (patent 400): coalescing IO exits.

On an IO exit the machine first performs the trapping access itself, exactly once, from the exit's
own data.  Then ``after_exit``:

1. the instruction interpreter unit (410) classifies the exit;
2. the KVM protocol (see protocol.py) decides whether the trapping instruction must first be
   completed with an ``immediate_exit`` run (an IN on this host) or emulation may start at once;
3. the registers are read from the sync-regs area and the *site address* is taken: the linear
   address where emulation starts, just past the trapping instruction (the only address always
   known, since x86 cannot be decoded backwards);
4. the policy (``fig5``/``fig6``/``fig7``), through the hashing unit and table (440) and the
   scanning unit (420), yields a block size or "singular";
5. the emulator runs the block, staying inside [site, site + size) (loops inside it are allowed up
   to a budget), stopping early wherever it is unsure;
6. the instruction pointer update unit (430) writes RIP and the changed registers back.

Everything that is not certain falls back to native execution: coalescing less is acceptable, a
wrong result never is.
"""

from __future__ import annotations

import ctypes
import errno
import struct
import time

from ..kvm._libc import ioctl
from ..kvm import ioctls as K
from ..kvm.structs import RUN_IMMEDIATE_EXIT, RUN_S
from ..x86 import stops as ST
from ..x86.emulator import Emulator
from ..x86.state import BASE, CS, EDX, FL, IF, IP, NSTATE, TF, CpuState
from . import protocol as P
from collections import OrderedDict

from .hashing import (DEFAULT_TABLE_SIZE, HASH_BLOCK, HASH_BLOCK_ADDRESS, Fig5Entry, Fig5Table,
                      Fig6Table, Fig7Table, HashingUnit)
from .interpreter import PIO_IN, PIO_OUT, InstructionInterpreter
from .ipupdate import InstructionPointerUpdate, load_state
from .scanner import ScanningUnit
from . import rental as R

OFF, FIG5, FIG6, FIG7, TRACE = "off", "fig5", "fig6", "fig7", "trace"
POLICIES = (OFF, FIG5, FIG6, FIG7, TRACE)
DEFAULT_POLICY = FIG5
DEFAULT_EXTENT = 10
AUTO_EXTENT = "auto"  # --extent auto: calibrated to this host (calibrate.py)
MAX_EXTENT = 10_000
# Warm-up (beyond the patent, see rental.py): with N > 0 a site is emulated only from its
# (N + 1)-th exit on, its earlier exits left to native execution at the cost of a dict lookup;
# "auto" decides per site by the ski-rental rule with a forecast of what emulating it would save;
# 0 emulates from the first sighting, as the patent's figures do.  --literal always means 0.
# With any warm-up, emulations are also judged by their measured cost (see _coalesce).
AUTO_WARMUP = "auto"
MAX_WARMUP = 1_000_000
# Per exit: at most this many emulated instructions (loops inside a block) and this much time.
# The time bound is the one that usually ends a long emulation here (the emulator runs 150-300 ns
# an instruction on this host, so 2 ms is 7,000-13,000 instructions); the instruction bound
# stays above it so that a trace through IO-dense code is not handed back to KVM (an exit, and
# a completion run when the guest next traps on an IN: about 50 us here) every 4,096
# instructions, as it was before.
BLOCK_BUDGET = 16384
BLOCK_TIME_NS = 2_000_000

# The command line's defaults.  The Python API keeps extent 10 and warm-up 0 (the patent's
# figures, emulating from the first sighting: what the equivalence tests exercise), but a user
# running a guest gets what is fastest on the host at hand:
# * trace's extent is the calibrated one.  Its extent bounds the instructions between two IOs;
#   where native execution is dear (this host's software KVM runs about 0.5 us an instruction
#   against 0.05-0.3 us emulated) a fixed 10 hands non-IO stretches such as uart_spin's line
#   building back to KVM (4.0 us a byte against 1.2 us with auto, median of 5); on hardware KVM
#   the calibration picks a short extent instead.
# * the warm-up is auto: with warm-up 0 every site pays its scan and compilation at its first
#   exit, so short guests ran 40-280 % slower coalesced than off; with auto they stay within a
#   few percent and uart_spin keeps its gain (fig5 -32 %, scripts/bench_coalesce.py).
COMMAND_LINE_WARMUP = AUTO_WARMUP


def command_line_extent(policy: str):
    """The extent the command line uses for ``policy`` when --extent is not given."""
    return AUTO_EXTENT if policy == TRACE else DEFAULT_EXTENT


def policy_spec(text: str, extent=None):
    """``NAME`` or ``NAME:EXTENT`` (the measurement scripts' policies) -> (policy, extent):
    EXTENT is a number or auto; without it, ``extent`` if given, else the command line's."""
    policy, _, own = text.partition(":")
    if own:
        return policy, AUTO_EXTENT if own == AUTO_EXTENT else int(own)
    return policy, command_line_extent(policy) if extent is None else extent


# Stop reasons the engine adds to the emulator's.
IO_STOP = "io-stop"  # an IO operation raised an interrupt (IF=1) or ended the run
IRQ_PENDING = "irq-pending"  # an interrupt is waiting and IF=1: let KVM deliver it first
REP_PENDING = "rep-pending"  # the trapping string IO has iterations left
PROTOCOL = "protocol"  # this KVM's completion behaviour is not safe for this exit kind
COMPLETION_EXIT = "completion-exit"  # the completion run returned a real exit
KICK_PENDING = "kick-pending"  # the vCPU was kicked (deadline, signal, input): handle that first

# Profitability (beyond the patent): a site whose emulation is unprofitable (see _score) this
# many times in a row is demoted to singular for DEMOTE_FIRST of its exits, doubling
# on each relapse up to DEMOTE_MAX; a success halves the penalty again.
DEMOTE_AFTER = 3
DEMOTE_FIRST = 16
DEMOTE_MAX = 4096
# With warm-up auto, a bought site's first this many timed emulations are not held against it:
# they run cold (its code just compiled or loaded, the Python paths around it not yet warm).
# Measured, fig8's loop head under fig5, the first run in a process: 767 us (the purchase), then
# 27, 27, 95, 22, 19, 16, 31, 17, 14 and 12 us, settling at 10-12, against 23 us saved (three
# exits); three of those in a row demoted it, and fig5 took 3,802 exits instead of 2,134.
SETTLE_EMULATIONS = 10
# Naps (see CoalescingEngine._nap): after NAP_PROBE idle exits the machine leaves the next
# NAP_FIRST exits native without calling the engine, doubling on each nap in a row up to NAP_MAX
# (at 8-25 us an exit here, 0.13-0.4 s); each IO an emulation absorbs earns one more idle exit
# before the next nap, up to NAP_CREDIT.
NAP_PROBE = 64
NAP_REPROBE = 16  # idle exits before the next nap in a row
NAP_FIRST = 64
NAP_MAX = 16384
NAP_CREDIT = 4096
_NEVER = 1 << 62
# Figure 5's singular memo is re-checked against the code every this many hits (see _singular_site).
SINGULAR_RECHECK = 32
# A site's state (field 4 of its demotion entry): warming up (watched, not yet bought); active
# (emulated, unless demoted for its skip count); resting (its forecast said emulating would not
# pay: native for its skip count, then watched afresh); singular (with warm-up, Figure 5's memo
# said singular: native for the memo's re-check interval, then the memo is consulted again).
WARMING, ACTIVE, RESTING, SINGULAR = 0, 1, 2, 3


# First bytes an INS/OUTS instruction can start with: its opcodes (6C-6F) and the prefixes
# (REP/REPNE, operand and address size, segment overrides).  Any other byte at the site rules
# out a string IO instruction there without decoding.
_STRING_PIO_LEAD = frozenset((0x6C, 0x6D, 0x6E, 0x6F, 0xF3, 0xF2, 0x66, 0x67,
                              0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65))


# Emulations ended from outside (a device deadline, the time budget, an interrupt or the end of
# the run): with a warm-up they say nothing about the site and are not scored.
_NOT_THE_SITES = frozenset((ST.DEADLINE, IO_STOP))
# The length of an IN instruction without prefixes, by opcode: E4/E5 (imm8 port) 2 bytes,
# EC/ED (port in DX) 1 byte.
_IN_LENGTH = {0xE4: 2, 0xE5: 2, 0xEC: 1, 0xED: 1}
_RFLAGS_RF = 1 << 16  # the resume flag
_RIP = struct.Struct("<Q")
_U64 = struct.Struct("<Q")
_RIP_OFF = RUN_S + 16 * 8  # kvm_regs.rip in the sync-regs area
_CS_BASE_OFF = RUN_S + 144  # kvm_sregs.cs.base
# kvm_regs.rip, then rflags, then (kvm_sregs starts with) cs.base: one unpack for both.
_RIP_AND_CS_BASE = struct.Struct("<Q8xQ")


class CoalescingEngine:
    def __init__(self, machine, policy: str = DEFAULT_POLICY, extent: int = DEFAULT_EXTENT,
                 hash_mode: str = HASH_BLOCK_ADDRESS, literal: bool = False,
                 table_size: int = DEFAULT_TABLE_SIZE, vm_id: int = 0, tables=None,
                 warmup: int | str = 0):
        if policy not in POLICIES or policy == OFF:
            raise ValueError(f"policy must be one of {', '.join(POLICIES[1:])}, not {policy!r}")
        if warmup != AUTO_WARMUP and (not isinstance(warmup, int) or isinstance(warmup, bool)
                                      or not 0 <= warmup <= MAX_WARMUP):
            raise ValueError(f"warmup must be auto or an integer from 0 to {MAX_WARMUP}, "
                             f"not {warmup!r}")
        if literal:
            warmup = 0  # the patent's flow: every site is a candidate from its first exit
        self.calibration = None
        if extent == AUTO_EXTENT or warmup:
            from .calibrate import calibrate

            self.calibration = calibrate(machine.kvm)
            if extent == AUTO_EXTENT:
                extent = self.calibration["extent"]
        if not isinstance(extent, int) or not 1 <= extent <= MAX_EXTENT:
            raise ValueError(f"extent must be a positive integer up to {MAX_EXTENT}, not {extent!r}")
        self.warmup = warmup
        self._forecast = warmup == AUTO_WARMUP
        # What native execution costs (the costed rules, with warm-up only), and what this engine
        # has measured buying a site and emulating a warm one cost (see rental.py).
        cal = self.calibration or {}
        self._exit_ns = int(cal.get("exit_us", 0) * 1000)
        self._native_ns = int(cal.get("native_ns_per_insn", 0))
        self._buy_ns = float(cal.get("compile_us", 0) * 1000)
        self._overhead_ns = float(R.OVERHEAD_PRIOR_EXITS * self._exit_ns)
        self._gap_ns = R.gap_ns(self._exit_ns, self._native_ns, extent)
        # With --warmup auto the engine sits out a run's first exits (rental.dormant_exits):
        # the machine's run loop leaves them native without calling the engine at all.
        self.dormant = R.dormant_exits(self._buy_ns, self._exit_ns) if self._forecast else 0
        # Naps (see _nap), also with --warmup auto only: exits since the last emulation that
        # absorbed an IO, how many make a nap, the next nap's length, and the stats.
        self._idle = 0
        self._nap_probe = NAP_PROBE if self._forecast else _NEVER
        self._nap_len = NAP_FIRST
        self._idle_site: list | None = None  # the demotion entry of the last idle exit's site
        self.naps = self.napped = 0
        self._reach = extent * R.INSN_BYTES
        # The forecast (see _watch and _tick): the entry and site of the last exit when its site
        # is watched, that exit's time, and how often recent exits had a follow-on.
        self._prev: list | None = None
        self._prev_site = self._last_exit = 0
        self._recent = 0.0
        # A visit's follow-ons: trace slides on; a figure's block holds at most about one IO
        # per two instructions of its extent.
        self._cap = R.CHAIN_CAP if policy == TRACE else max(1, extent // 2)
        self.machine = machine
        self.policy = policy
        self.extent = extent
        self.literal = literal
        self.vm_id = vm_id
        self.vcpu = machine.vcpu
        self.page = machine.vcpu.page
        self.protocol = P.probe(machine.kvm)
        self._out_direct = self.protocol[PIO_OUT] == P.DIRECT
        self._in_direct = self.protocol[PIO_IN] == P.DIRECT
        self.emu = Emulator(machine.mem, machine.pio, machine.mmio)
        # A debug-exit or an interrupt becoming deliverable during an emulated IO stops the
        # emulation right after that instruction, as in native execution (the machine calls
        # this from the device callback; nothing is polled per access).
        machine.on_event = self._on_machine_event
        self.interpreter = InstructionInterpreter()
        self.scanner = ScanningUnit(self.emu, machine.mmio)
        self.hasher = HashingUnit(HASH_BLOCK if policy == FIG6 else hash_mode)
        self.ipu = InstructionPointerUpdate(self.page)
        if tables is not None:
            self.table = tables
        elif policy == FIG5:
            self.table = Fig5Table(table_size)
        elif policy == FIG6:
            self.table = Fig6Table(table_size)
        elif policy == FIG7:
            self.table = Fig7Table(table_size)
        else:
            self.table = None  # trace follows control flow; the emulator's cache validates code
        # site -> [misses in a row, exits left to skip, next penalty, emulations, state (WARMING,
        # ACTIVE, RESTING), visits followed by a follow-on exit, visits observed, exits rented
        # (watched, and rests taken while the rent was positive), the site of the last
        # follow-on (-1: none yet)]; None with --literal.
        self.demotion: OrderedDict | None = None if literal else OrderedDict()
        self.table_size = table_size
        self.demoted = self.warming = 0
        # Exits skipped on the fast path (after_pio), by the state of their site.
        self._skips = [0, 0, 0, 0]
        self._dget = self.demotion.get if self.demotion is not None else {}.get
        # Trapping address of an MMIO read -> the site after it (see _coalesce); None with
        # --literal.
        self._trap_site: dict | None = None if literal else {}
        self.cpu = CpuState()
        self.ram = machine.mem.ram
        self._ram_len = len(self.ram)
        self._decide = {FIG5: self._fig5, FIG6: self._fig6, FIG7: self._fig7, TRACE: None}[policy]
        # stats
        self.scans = self.blocks_emulated = self.instructions_emulated = self.io_emulated = 0
        self.singular = self.table_hits = self.table_misses = self.hash_mismatches = 0
        self.invalidations = self.completions = 0
        self.stops: dict[str, int] = {}

    def _on_machine_event(self) -> None:
        m = self.machine
        if m._stop is not None or (m._intr and self.emu._s[FL] & IF):
            self.emu.request_stop()

    # -- the dispatcher ---------------------------------------------------------------------------

    def after_exit(self, ex) -> int:
        """Coalesce after any exit value (the machine's slow path, MMIO, tests).  Returns how
        many exits the machine should now leave native without calling the engine (a nap, see
        _nap), usually 0."""
        kind = self.interpreter.classify(ex)
        if kind is not None:
            self._coalesce(kind, getattr(ex, "port", -1))
        return self._nap() if self._idle >= self._nap_probe else 0

    def after_pio(self, is_out: int, port: int) -> int:
        """The run loop's fast path for port IO: the same as after_exit(IoOut/IoIn), without
        building the exit value (about 0.5 us here).  An OUT at a demoted site, the commonest
        case where coalescing cannot help, is settled here with one unpack and a dict lookup."""
        page = self.page
        site = -1  # not known without the full path (a kick pending, an OUT to complete first)
        if not page[RUN_IMMEDIATE_EXIT] and (self._out_direct or not is_out):
            rip, cs_base = _RIP_AND_CS_BASE.unpack_from(page, _RIP_OFF)
            site = cs_base + rip
            if not is_out and not self._in_direct:
                # RIP is still on an IN that must be completed first: the site is RIP plus the
                # IN's length (see _singular_before_completion), so that a site settled here
                # needs no completion run.
                op = self.ram[site] if site < self._ram_len else -1
                site = site + _IN_LENGTH[op] if op in _IN_LENGTH else -1
        if site < 0:
            self._coalesce(PIO_OUT if is_out else PIO_IN, port)
        else:
            d = self._dget(site)
            if d is not None and d[1] > 0 and d[4]:  # skipping, and not watched (WARMING = 0)
                d[1] -= 1
                self._skips[d[4]] += 1
                self._idle += 1
                self._idle_site = d
                if self._prev is not None:
                    self._tick(site)
            elif not self._skip_site(site):
                self._coalesce(PIO_OUT if is_out else PIO_IN, port, checked_site=site)
        return self._nap() if self._idle >= self._nap_probe else 0

    def _nap(self) -> int:
        """Ask the machine to leave the next exits native without calling the engine: NAP_PROBE
        idle exits have gone by (exits at resting, demoted or singular sites, with no site
        warming up in between, beyond any credit from IOs absorbed).  Each nap in a row is twice
        the last (from NAP_FIRST up to NAP_MAX), but no longer than the remaining rest of the
        last idle exit's site, which the nap counts down; an emulation that absorbs an IO
        starts the doubling again.

        Beyond the patent, with --warmup auto only.  An exit the engine merely looks at and
        leaves native costs 0.4-1.5 us here, 5-10 % of a fast exit: a guest where nothing pays
        (a tight OUT loop, polled MMIO under the figures) paid that on every exit.  A nap costs
        a phase where coalescing would pay at most one nap's exits, and a nap is never longer
        than the idle exits before it.  Leaving exits native is always correct."""
        n = self._nap_len
        self._nap_len = min(NAP_MAX, n * 2)
        self._nap_probe = NAP_REPROBE  # the next nap in a row comes sooner
        d = self._idle_site
        if d is not None and (d[4] == RESTING or d[4] == ACTIVE):
            # The last idle exit's site rests (or is demoted) for d[1] more of its exits: the
            # nap ends no later than that, and counts for it, so a site comes back to be
            # watched (and perhaps bought) after as many of its exits as without naps.
            n = min(n, max(NAP_FIRST, d[1]))
            d[1] = max(0, d[1] - n)
        self._idle = 0
        self._prev = None  # the next exit the engine sees does not follow the watched one
        self.naps += 1
        self.napped += n
        return n

    def _coalesce(self, kind: str, port: int, checked_site: int = -1) -> None:
        """``checked_site`` >= 0: _skip_site has already passed that site (for an IN still to
        be completed, computed from the IN's length)."""
        t0 = time.perf_counter_ns()
        trap = -1
        checked = checked_site
        site_checked = checked_site >= 0
        if self.page[RUN_IMMEDIATE_EXIT]:
            self._stop(KICK_PENDING)  # a device deadline or a signal is waiting: no emulation
            return
        how = self.protocol[kind]
        if how == P.DIRECT:
            # RIP is already past the trap: the site is known before reading any register.
            if not site_checked and self._skip_site(self._exit_site()):
                return
        else:
            if how == P.UNSAFE:
                self._stop(PROTOCOL)
                return
            if kind == PIO_IN:
                if not site_checked and self._singular_before_completion():
                    # A known singular or demoted site: no block to run, so no completion run
                    # either; KVM completes the IN itself on the next entry.
                    return
            elif self._trap_site is not None:
                # An MMIO read: its length is not known without decoding, so the site it led
                # to last time is remembered by the trapping address.  A stale answer only
                # ever leaves one exit to native execution.
                trap = self._exit_site()  # RIP is still on the trapping instruction
                checked = self._trap_site.get(trap, -1)
                if checked >= 0 and self._skip_site(checked):
                    return
            if not self._complete():
                return
        cpu = self.cpu  # cpu.plain stays True: a state that is not plain never reaches run()
        s = cpu.s
        if not load_state(self.page, s):
            self._stop(ST.MODE)
            return
        flags = s[FL]
        if flags & TF:
            self._stop(ST.TRAP_FLAG)
            return
        m = self.machine
        if m._intr and flags & IF:
            self._stop(IRQ_PENDING)
            return
        cs_base = s[BASE + CS]
        ip = s[IP]
        site = cs_base + ip
        if port >= 0 and self.ram[site] in _STRING_PIO_LEAD:
            nxt = self.emu.lookup(cs_base, ip)
            if nxt.is_pio and nxt.is_string and s[EDX] & 0xFFFF == port:
                self._stop(REP_PENDING)  # RIP still on a REP INS/OUTS with iterations left
                if self.demotion is not None:
                    # No emulation can start here while iterations are left, and each exit
                    # found this out at the price of reading the registers: demote the site
                    # like one whose emulations stop before any IO.
                    self._score(site, False, False)
                return
        if trap >= 0:
            trap_site = self._trap_site
            if len(trap_site) >= self.table_size:
                trap_site.clear()
            trap_site[trap] = site
        if how != P.DIRECT and site != checked and self._skip_site(site):
            return  # the site of a completed access, now known
        demotion = self.demotion
        if self._decide is None:  # trace: follow the real control flow, extent slides along
            lo, hi, window = 0, 0x10000, self.extent
        else:
            size = self._decide(site, s, cs_base, ip)
            if not size:
                self.singular += 1
                if demotion is not None and self.warmup:
                    # Costed: a scan that found nothing to emulate was spent for nothing (Figures
                    # 6 and 7 keep no memo of singular sites, so each exit would scan again).
                    self._score(site, False, False)
                return
            lo, hi, window = ip, min(ip + size, 0x10000), None
        before = list(s)
        emu = self.emu
        deadline = time.monotonic_ns() + BLOCK_TIME_NS
        nd = m.next_deadline
        if nd is not None and nd < deadline:
            deadline = nd
        compiled = emu.compiled
        replaced = emu.replaced
        t_run = time.perf_counter_ns()
        stop = emu.run(cpu, max_insns=BLOCK_BUDGET, lo=lo, hi=hi, io_window=window,
                       deadline_ns=deadline)
        t_run = time.perf_counter_ns() - t_run
        reason = IO_STOP if stop.reason == ST.REQUESTED else stop.reason
        self.stops[reason] = self.stops.get(reason, 0) + 1
        if stop.insns:
            # The instructions completed, so RF is clear, as the CPU clears it after every
            # instruction that completes (SDM 3, 17.3.1.1); KVM may have left it set after
            # emulating a REP string instruction against MMIO.
            cpu.s[FL] &= ~_RFLAGS_RF
            self.ipu.commit(before, cpu.s)
            self.blocks_emulated += 1
            self.instructions_emulated += stop.insns
            self.io_emulated += stop.ios
            if stop.ios:
                # IOs absorbed: the engine earns its keep; it may now see as many more idle
                # exits before a nap (up to NAP_CREDIT), and naps start afresh.
                self._idle = max(-NAP_CREDIT, min(self._idle, 0) - stop.ios)
                self._nap_len = NAP_FIRST
                if self._forecast:
                    self._nap_probe = NAP_PROBE
        if demotion is not None:
            if self.warmup:
                # Costed: this exit's work (completion, scan, emulation, write-back), measured,
                # against the exits it saved.  The instructions it spared KVM are not counted:
                # KVM's time per instruction varies with the instruction (the calibration times
                # one loop), and when unsure the exit goes back to native execution.
                spent = time.perf_counter_ns() - t0
                if reason not in _NOT_THE_SITES:
                    self._score(site, spent < stop.ios * self._exit_ns, False, timed=True)
                if emu.compiled == compiled:
                    # A warm emulation: the engine's own overhead around it, for the forecast.
                    self._overhead_ns += (spent - t_run - self._overhead_ns) * R.OVERHEAD_WEIGHT
            else:
                if not (reason == ST.DEADLINE and (emu.compiled != compiled or not stop.insns)):
                    # (a run cut short by its time budget while compiling new code, or by a
                    # device deadline already due, says nothing about the site)
                    self._score(site, stop.ios > 0, emu.replaced != replaced)

    def _new_entry(self, site: int, state: int) -> list:
        """A site's profitability and forecast entry (fields: see __init__), in ``state``; the
        least recently used entry goes beyond table_size."""
        demotion = self.demotion
        d = demotion[site] = [0, 0, DEMOTE_FIRST, 0, state, 0, 0, 0, -1]
        if len(demotion) > self.table_size:
            demotion.popitem(last=False)
        return d

    def _score(self, site: int, profitable: bool, changed: bool, timed: bool = False) -> None:
        """Profitability bookkeeping for a site (bounded like the table: LRU).

        Without warm-up an emulation is unprofitable when it reached no further IO, or when a
        site already emulated before met code that changed since it was decoded (code that
        keeps changing, where every exit pays capstone and compilation: far dearer than the
        exit it saves).  Merely reaching new code is not a change: a trace that goes further
        than the last one compiles what it meets, once.  With warm-up the caller measures it
        (see _coalesce, ``timed``), and a site's first SETTLE_EMULATIONS timed emulations after
        it was bought count only when they pay."""
        demotion = self.demotion
        d = demotion.get(site)
        if d is None:
            d = self._new_entry(site, ACTIVE)
        else:
            demotion.move_to_end(site)
        d[4] = ACTIVE
        profitable = profitable and not (changed and d[3])
        d[3] += 1
        if profitable:
            d[0] = 0
            d[2] = max(DEMOTE_FIRST, d[2] // 2)
            return
        if timed and d[3] <= SETTLE_EMULATIONS:
            return  # still settling after its purchase (see SETTLE_EMULATIONS)
        d[0] += 1
        if d[0] >= DEMOTE_AFTER:
            d[0] = 0
            d[1] = d[2]
            d[2] = min(DEMOTE_MAX, d[2] * 2)

    def _singular_before_completion(self) -> bool:
        """Before completing a trapped IN: is the instruction after it a site known to be
        singular (Figure 5's memo) or demoted?  Then no completion run is needed.

        RIP still points at the IN here (that is why it needs completing), so the site is RIP
        plus the IN's length, read from its opcode: E4/E5 (imm8 port) are 2 bytes, EC/ED (DX)
        1 byte, one more with an operand-size prefix.  Anything else (INS, other prefixes) is
        left to the normal path."""
        page = self.page
        rip = _RIP.unpack_from(page, _RIP_OFF)[0]
        cs_base = _U64.unpack_from(page, _CS_BASE_OFF)[0]
        at = cs_base + rip
        ram = self.ram
        if at + 2 >= len(ram):
            return False
        op = ram[at]
        length = 0
        if op == 0x66:
            op = ram[at + 1]
            length = 1
        if op == 0xEC or op == 0xED:
            length += 1
        elif op == 0xE4 or op == 0xE5:
            length += 2
        else:
            return False
        return self._skip_site(at + length)

    def _skip_site(self, site: int) -> bool:
        """Leave this exit to native execution without reading registers: the site is still
        warming up, is demoted, or Figure 5 remembers it as singular.  Counted in the stats."""
        demotion = self.demotion
        if demotion is not None:
            d = demotion.get(site)
            if d is None and self.warmup:
                d = self._new_entry(site, WARMING)
            if d is not None:
                state = d[4]
                if state == ACTIVE or state == SINGULAR:
                    if self._prev is not None:
                        self._tick(site)
                    if d[1] > 0:
                        d[1] -= 1
                        self._skips[state] += 1
                        self._idle += 1
                        self._idle_site = d
                        return True
                elif self._forecast:
                    if self._watch(d, state, site):
                        return True
                else:  # a fixed warm-up: this site's first self.warmup exits stay native
                    d[7] += 1
                    if d[7] <= self.warmup:
                        self.warming += 1
                        return True
                    d[4] = ACTIVE
        if self.policy == FIG5 and self._singular_site(site):
            self.singular += 1
            self._idle += 1
            if self.warmup:
                # Skip on the fast path until the memo's next re-check is due, then consult it
                # (which re-checks the digest), exactly as often as without the fast path.
                d = self.demotion.get(site)
                if d is not None:
                    d[4] = SINGULAR
                    d[1] = SINGULAR_RECHECK - 1
                    self.table.entries(site)[0].unchecked = SINGULAR_RECHECK - 1
            return True
        return False

    def _tick(self, site: int) -> None:
        """An exit at ``site`` after an exit at a watched site: say whether an emulation from
        that site could have reached this exit (a follow-on), for the forecast.

        Figures 5-7 emulate forward from the site up to the extent: the exit must be a little
        after the watched site in the code (at most the extent's typical instruction length).
        trace follows the control flow, the extent sliding at each IO: the exit must be a little
        after the previous one in the code too, or come soon after it (loops, calls and returns:
        an exit round trip or two plus the extent's instructions run natively).  Only trace
        reads the clock (0.1-0.3 us, on every exit watched)."""
        prev = self._prev
        if self._decide is None:
            now = time.perf_counter_ns()
            near = prev is not None and (0 < site - self._prev_site <= self._reach
                                         or now - self._last_exit <= self._gap_ns)
            self._last_exit = now
        else:
            near = prev is not None and 0 < site - self._prev_site <= self._reach
        if prev is not None:
            if near:
                prev[5] += 1
                prev[8] = site  # the follower, for the forecast's walk (R.chain_along)
                self._recent += (1 - self._recent) * R.RECENT_WEIGHT
            else:
                self._recent -= self._recent * R.RECENT_WEIGHT
            self._prev = None

    def _watch(self, d: list, state: int, site: int) -> bool:
        """A watched (warming or resting) site's exit under --warmup auto: keep the forecast
        (rental.py) up to date, then say whether this exit stays native."""
        if self._prev is not None or self._decide is None:
            self._tick(site)  # (the Figures' forecast has nothing to do without a previous exit)
        if state == RESTING:
            if d[1] > 0:
                d[1] -= 1
                self._skips[RESTING] += 1
                self._idle += 1
                self._idle_site = d
                return True
            d[4] = WARMING  # rested: watched afresh (the exits rented so far still count)
            d[5] = d[6] = 0
        d[7] += 1
        if self._idle > 0 and d[2] == DEMOTE_FIRST:
            self._idle = 0  # a site warming up that never rested: still learning, no nap
        rent = 0.0
        if d[6] >= R.MIN_OBSERVED:
            # R.should_buy, with the rent computed once (this runs on every watched exit, and
            # the rent decides below whether the site rests)
            rent = R.rent_along(site, d, self.demotion.get, self._recent, self._cap,
                                None if self._decide is None else self._reach,
                                self._exit_ns, self._overhead_ns)
            if rent > 0 and d[7] * rent >= self._buy_ns:
                # Bought: its emulations are counted afresh, and a demotion starts from the
                # first penalty (the rests before it doubled the same field).
                d[4] = ACTIVE
                d[0] = d[3] = 0
                d[2] = DEMOTE_FIRST
                return False
        d[6] += 1
        self._prev, self._prev_site = d, site  # the next exit tells whether this one had a follow-on
        if d[6] > R.MIN_OBSERVED and rent * R.MAX_WATCH < self._buy_ns:
            # Its forecast says emulating would not pay, or only after more exits than are worth
            # watching (each costs a clock read): rest (native at the price of a dict lookup),
            # then look again.
            d[4] = RESTING
            d[1] = d[2]
            # The rest's exits are rented too: with a positive rent they count toward the price
            # (a site that saves a little on each exit buys after as many of its exits as the
            # rule asks, rests included: fig8's loop head under fig5, about 250); with none,
            # nothing has been paid towards it.
            d[7] = d[7] + d[2] if rent > 0 else 0
            d[2] = min(DEMOTE_MAX, d[2] * 2)
        self.warming += 1
        return True

    def _exit_site(self) -> int:
        """CS base + RIP from the sync-regs area: the site when RIP is already past the trap."""
        rip, cs_base = _RIP_AND_CS_BASE.unpack_from(self.page, _RIP_OFF)
        return cs_base + rip

    def _singular_site(self, site: int) -> bool:
        """Figure 5's singular memo, checked before any register is read.

        A singular answer only ever means "run natively", which is correct whatever the bytes
        are now; the digest is what lets a site whose code changed be noticed and scanned again.
        So it is re-checked on every SINGULAR_RECHECK-th hit rather than on each one, which keeps
        an exit at a singular site (a tight OUT loop, say) almost as cheap as without coalescing.
        """
        entries = self.table.entries(site)
        if not entries:
            return False
        e = entries[0]
        if not e.size == 0:
            return False
        e.unchecked += 1
        if e.unchecked >= SINGULAR_RECHECK:
            e.unchecked = 0
            if self.hasher.block(self.ram[site:site + e.nbytes], site) != e.digest:
                return False  # changed: the full path rescans it
        self.table_hits += 1
        return True

    def _stop(self, reason: str) -> None:
        self.stops[reason] = self.stops.get(reason, 0) + 1

    def _complete(self) -> bool:
        """Complete the trapping access with KVM_RUN and immediate_exit=1: KVM finishes the
        instruction (an IN's value into AL, RIP past it) and returns EINTR without running the
        guest.  About 5.5-10 us here: this is the price of starting a block at an IN."""
        page = self.page
        page[RUN_IMMEDIATE_EXIT] = 1
        r = ioctl(self.vcpu.fd, K.KVM_RUN, 0)
        err = ctypes.get_errno() if r < 0 else 0
        self.completions += 1
        kicker = self.machine._kicker
        if kicker is not None and kicker.pending:
            # A kick landed before or during this run, which swallowed its EINTR: keep the flag
            # set so that the run loop's next KVM_RUN returns at once and handles it.
            self._stop(KICK_PENDING)
            return False
        page[RUN_IMMEDIATE_EXIT] = 0
        if r < 0 and err in (errno.EINTR, errno.EAGAIN):
            return True
        if r >= 0:
            # The completion itself produced an exit (a string IN going on, say): hand it to the
            # machine like any other and do not coalesce.
            self._stop(COMPLETION_EXIT)
            self.machine.exit_counts["total"] = self.machine.exit_counts.get("total", 0) + 1
            self.machine.handle_exit(self.vcpu.decode_exit())
            return False
        self._stop(PROTOCOL)
        return False

    # -- the three embodiments --------------------------------------------------------------------

    def _fig5(self, site: int, s: list, cs_base: int, ip: int) -> int:
        """Figure 5 (501-513): table keyed by site address, entries checked by hash."""
        table = self.table
        entries = table.entries(site)
        ram = self.ram
        block = self.hasher.block
        if entries is not None:
            for e in entries:  # singular entries first (the paragraph after 513)
                if block(ram[site:site + e.nbytes], site) == e.digest:
                    self.table_hits += 1
                    return e.size
            self.hash_mismatches += 1
            if self.literal:
                return 0  # 513 -> 506: the patent's flow performs the single access
            # pykvmm's extension: every entry mismatched, so the code changed; scan again
            # (bounded to ENTRIES_PER_SITE entries per address).
            self.invalidations += 1
        else:
            self.table_misses += 1
        self.scans += 1
        r = self.scanner.scan(s, cs_base, ip, self.extent)
        if not r.ios:
            table.add(site, Fig5Entry(block(ram[site:site + r.scanned], site), 0, r.scanned))
            return 0
        table.add(site, Fig5Entry(block(ram[site:site + r.size], site), r.size, r.size))
        return r.size

    def _fig6(self, site: int, s: list, cs_base: int, ip: int) -> int:
        """Figure 6 (601-610): scan every time; emulate only blocks already in the table."""
        self.scans += 1
        r = self.scanner.scan(s, cs_base, ip, self.extent)
        if not r.ios:
            return 0
        digest = self.hasher.block(self.ram[site:site + r.size], site)
        if self.table.seen(digest):
            self.table_hits += 1
            return r.size
        self.table_misses += 1
        self.table.add(digest)  # 608: first sighting, then the single access (605)
        return 0

    def _fig7(self, site: int, s: list, cs_base: int, ip: int) -> int:
        """Figure 7 (701-712): keyed by the hashed physical address, qualified by the VM.

        The patent emulates a hit without looking at the code; pykvmm compares the stored bytes
        with the current ones first (far cheaper than a scan), so it never runs stale code."""
        key = HashingUnit.address(site, self.vm_id)
        hit = self.table.get(key)
        ram = self.ram
        if hit is not None:
            size, code = hit
            if ram[site:site + size] == code:
                self.table_hits += 1
                return size
            self.hash_mismatches += 1
            self.invalidations += 1
        else:
            self.table_misses += 1
        self.scans += 1
        r = self.scanner.scan(s, cs_base, ip, self.extent)
        if not r.ios:
            return 0  # 709: singular sites are not stored in Figure 7
        self.table.put(key, r.size, bytes(ram[site:site + r.size]))
        return r.size

    # -- stats ------------------------------------------------------------------------------------

    def stats(self) -> dict:
        return {
            "policy": self.policy, "extent": self.extent, "hash": self.hasher.mode,
            "literal": self.literal, "scans": self.scans, "blocks_emulated": self.blocks_emulated,
            "instructions_emulated": self.instructions_emulated, "io_emulated": self.io_emulated,
            "singular": self.singular + self._skips[SINGULAR], "table_hits": self.table_hits,
            "table_misses": self.table_misses, "hash_mismatches": self.hash_mismatches,
            "invalidations": self.invalidations, "completions": self.completions,
            "table_entries": len(self.table) if self.table is not None else 0,
            "demoted": self.demoted + self._skips[ACTIVE] + self._skips[RESTING],
            "warmup": self.warmup, "warming": self.warming + self._skips[WARMING],
            **({"dormant": self.dormant, "naps": self.naps, "napped": self.napped}
               if self._forecast else {}),
            **({"buy_us": round(self._buy_ns / 1000, 1),
                "overhead_us": round(self._overhead_ns / 1000, 1)} if self.warmup else {}),
            "stops": dict(sorted(self.stops.items())),
            "protocol": dict(self.protocol),
            **({"calibration": self.calibration} if self.calibration else {}),
        }


__all__ = ["CoalescingEngine", "POLICIES", "NSTATE"]
