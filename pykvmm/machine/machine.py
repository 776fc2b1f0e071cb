"""The machine: a KVM VM with PC memory, the port and MMIO buses, devices, and the run loop.

Running a snippet natively (for tests and the emulator's differential checks)::

    with Machine(MachineConfig(serial="null")) as m:
        m.load_guest(code)          # placed at 0x7C00, entered per the guest entry contract
        result = m.run(timeout=5)   # RunResult: end, exit_status, final regs in m.final_regs()

``m.set_entry_state(regs=..., sregs=...)`` overrides the entry registers.
Running and exit handling are separate: ``handle_exit(exit)`` is the dispatcher, which unit tests
drive with made-up exits and no KVM at all.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import os
import struct
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .. import early_stop
from ..devices.a20 import FastA20
from ..devices.cmos import Cmos
from ..devices.debug_exit import DebugExit
from ..devices.debugcon import DebugCon
from ..devices.pic8259 import DualPic
from ..devices.pit8254 import Pit8254
from ..devices.port61 import Port61
from ..devices.post import PostPort
from ..devices.uart16550 import Uart16550
from ..errors import KvmError, UsageError
from ..kvm import exits as X
from ..kvm import ioctls as K
from ..kvm._libc import ioctl as _libc_ioctl
from ..kvm.structs import RUN_EXIT_REASON as _EXIT_REASON
from ..kvm.structs import RUN_IMMEDIATE_EXIT as _IMMEDIATE_EXIT
from . import layout
from .bus import MmioBus, PortBus
from .kicker import Kicker  # at import: gives the kick signal its handler from the main thread
from .memory import GuestMemory
from .sinks import Sink, open_sink

# Run endings (the stats JSON "end" key).
END_DEBUG_EXIT = "debug-exit"
END_HALT = "halt"
END_SHUTDOWN = "shutdown"
END_TIMEOUT = "timeout"
END_INTERRUPT = "interrupt"
END_ERROR = "error"

# pykvmm's own exit statuses (guests should not use them as debug-exit values).
STATUS_USAGE = 2
STATUS_FAULT = 3
STATUS_TIMEOUT = 124
STATUS_SIGINT = 130
STATUS_SIGTERM = 143

# Real-mode segment descriptor cache types (Intel SDM 3, 3.4.5.1): accessed data read/write and
# accessed code execute/read, both present with S=1, as after reset.
_DATA_TYPE = 0x3
_CODE_TYPE = 0xB
_RFLAGS_IF = 1 << 9
# kvm_run from exit_reason (offset 8) through the io exit fields (offset 32): reason, 20 bytes of
# other fields, then direction, size, port, count, data_offset.
_RUN_HDR = struct.Struct("<I20xBBHIQ")
_EXIT_IO = K.KVM_EXIT_IO

_RFLAGS_RESERVED1 = 1 << 1


FIRMWARE_BUILTIN = "builtin"  # pykvmm's firmware/bios.bin: 64 KiB read-only at 0xF0000
FIRMWARE_EXTERNAL = "external"  # --bios PATH (e.g. SeaBIOS): 0xC0000-0xFFFFF writable RAM


# The cyclic garbage collector during a run.  Everything made before a run (firmware, devices, the
# emulator's decode and code caches, compiled blocks: tens of thousands of objects) lives as long
# as the run, yet a full collection, triggered by the run's own allocations (building blocks),
# traverses all of it: 10-20 ms here, several times a short guest's whole run (pit_program runs
# in 3.6 ms; with trace, GC collections made it 4.5 ms or 14 ms in half the rounds).  So the
# objects alive when a run starts are frozen (gc.freeze: left out of collections) until the last
# concurrent run ends (several VMs run in threads of one process); what the run itself makes is
# collected as usual.
_NEVER = 1 << 62  # an exit count no run reaches
_gc_lock = threading.Lock()
_gc_runs = 0
_gc_froze = False  # only what pykvmm froze is unfrozen (with the collector off it freezes nothing)


def _gc_hold() -> None:
    global _gc_runs, _gc_froze
    with _gc_lock:
        if not _gc_runs and gc.isenabled() and not gc.get_freeze_count():
            gc.freeze()
            _gc_froze = True
        _gc_runs += 1


def _gc_release() -> None:
    global _gc_runs, _gc_froze
    with _gc_lock:
        _gc_runs -= 1
        if not _gc_runs and _gc_froze:
            gc.unfreeze()  # back into the oldest generation, collected as before
            _gc_froze = False


@dataclass
class MachineConfig:
    mem_mib: int = layout.DEFAULT_MEM_MIB
    serial: str = "stdio"
    serial2: str = "null"  # the memory-mapped 16550 at 0xB0000
    debugcon: str = "null"  # port 0x402
    exit_code: str = "plain"  # or "qemu": status (v << 1) | 1, as QEMU's isa-debug-exit
    firmware: bytes | None = None  # None: start the guest directly at 0000:7C00
    firmware_kind: str = FIRMWARE_BUILTIN
    serial_input: bool | None = None  # read COM1 input from stdin (default: when serial is stdio)
    extra: dict = field(default_factory=dict)


class _NotifyOnWrite:
    """Bus adapter: a write may move a device's next deadline, so the machine reschedules."""

    __slots__ = ("read", "_write", "_after")

    def __init__(self, device, after) -> None:
        self.read = device.read
        self._write = device.write
        self._after = after

    def write(self, offset: int, value: int) -> None:
        self._write(offset, value)
        self._after()


class _Com1Input:
    """Bus adapter for COM1: host input reaches the receiver only once the guest is listening.

    Bytes pushed into the UART before the guest has set it up would be lost: enabling the FIFOs
    (FCR bit 0) clears the receiver, as the 16550 datasheet says.  So input waits in the pump until
    the guest reads RBR or LSR or enables the received-data interrupt (IER bit 0), and after every
    read the receive FIFO is topped up from the pump.
    """

    __slots__ = ("_read", "_write", "_machine")

    def __init__(self, device, machine) -> None:
        self._read = device.read
        self._write = device.write
        self._machine = machine

    def read(self, offset: int) -> int:
        value = self._read(offset)
        m = self._machine
        pump = m.input_pump
        if pump is not None:
            if not m.input_armed and offset in (_UART_RBR, _UART_LSR):
                m.input_armed = True
            if m.input_armed and (pump.pending or not pump.queue.empty()):
                pump.feed(m.uart)
        return value

    def write(self, offset: int, value: int) -> None:
        self._write(offset, value)
        if offset == _UART_IER and value & _UART_IER_ERBFI:
            m = self._machine
            m.input_armed = True
            pump = m.input_pump
            if pump is not None and (pump.pending or not pump.queue.empty()):
                pump.feed(m.uart)


_UART_RBR, _UART_IER, _UART_LSR = 0, 1, 5
_UART_IER_ERBFI = 0x01


@dataclass
class RunResult:
    end: str
    exit_status: int
    wall_s: float
    detail: str = ""


class Machine:
    def __init__(self, config: MachineConfig | None = None, kvm=None):
        from ..kvm.system import Kvm  # the binding is opened only when a machine is built

        self.config = config or MachineConfig()
        if self.config.exit_code not in ("plain", "qemu"):
            raise UsageError(f"--exit-code must be plain or qemu, not {self.config.exit_code!r}")
        self._owns_kvm = kvm is None
        self.kvm = kvm or Kvm()
        fw = self.config.firmware
        if fw is not None and self.config.firmware_kind == FIRMWARE_EXTERNAL:
            if len(fw) == 0 or len(fw) % (64 * layout.KIB) or len(fw) > 256 * layout.KIB:
                raise UsageError(f"a --bios image must be 64, 128, 192 or 256 KiB, not {len(fw)} bytes")
            self.mem = GuestMemory(self.config.mem_mib * layout.MIB,
                                   rom_start=layout.EXT_RAM_START - len(fw), rom_writable=True)
        else:
            if fw is not None and len(fw) != layout.BIOS_SIZE:
                raise UsageError(f"pykvmm's firmware image must be {layout.BIOS_SIZE} bytes, not {len(fw)}")
            self.mem = GuestMemory(self.config.mem_mib * layout.MIB)
        self.pio = PortBus()
        self.mmio = MmioBus()
        self.serial: Sink = open_sink(self.config.serial)
        self.serial2: Sink = open_sink(self.config.serial2, "--serial2")
        self.debugcon_sink: Sink = open_sink(self.config.debugcon, "--debugcon")
        self.sinks: list[Sink] = [self.serial, self.serial2, self.debugcon_sink]
        self.input_pump = None
        self.input_armed = False  # the guest has started listening on COM1 (see _Com1Input)
        self.irqs_injected = 0
        self._intr = False  # the CPU's INTR pin, as the master PIC drives it
        self._timeout_at: int | None = None
        self.next_deadline: int | None = None  # the kicker's next timed kick (monotonic ns)
        self._kicker = None
        self.vm = self.kvm.create_vm()
        self.vcpu = None
        self.exit_counts: dict[str, int] = {}
        self.engine = None  # the coalescing engine, attached by a higher layer
        self._engine_dormant = False  # the run loop is not calling the engine now (see _loop)
        # Host time spent inside the engine's calls, and their number (stats: coalesce.engine_us,
        # engine_calls): the engine's own cost, free of the noise of KVM_RUN's time, which on
        # this host spreads a few-ms run by 5-50 % from one process to the next.  Timing a call
        # costs about 0.13 us (two perf_counter_ns), a tenth of the cheapest engine call.
        self.engine_ns = 0
        self.engine_calls = 0
        self._nap = 0  # exits the engine asked, from handle_exit, to be left native
        # Called (no arguments) when the CPU's INTR line rises or a stop is requested, so that a
        # higher layer emulating guest code (the coalescing engine) can stop at the same
        # instruction boundary as native execution would, without polling after every access.
        self.on_event: Callable[[], None] | None = None
        self.ring = None  # KVM's coalesced IO ring (coalesced_ring.py), drained after every exit
        self._stop: tuple[str, int] | None = None
        self._stop_detail = ""
        self.guest_exit_value: int | None = None
        self._build()

    # -- construction -----------------------------------------------------------------------------

    def _build(self) -> None:
        vm, mem = self.vm, self.mem
        host = mem.host_address()
        for lo, hi in mem.ram_ranges():
            vm.set_memory_region(lo, hi - lo, host + lo)
        for lo, hi in mem.rom_ranges():
            vm.set_memory_region(lo, hi - lo, host + lo, readonly=True)
        if self.config.firmware is not None:
            # The reset alias just below 4 GiB: the same backing, so the CPU's first fetch at
            # 0xFFFFFFF0 reads the firmware's reset vector.
            size = layout.EXT_RAM_START - mem.rom_start
            vm.set_memory_region(layout.RESET_ALIAS_TOP - size, size, host + mem.rom_start, readonly=True)
        if self.kvm.check_extension(K.KVM_CAP_SET_TSS_ADDR):
            vm.set_tss_addr(layout.TSS_ADDR)
        vcpu = self.vcpu = vm.create_vcpu(0)
        vcpu.set_cpuid2(self.kvm.supported_cpuid())
        if not self.kvm.check_extension(K.KVM_CAP_SYNC_REGS) & K.KVM_SYNC_X86_REGS:
            raise UsageError("this KVM lacks KVM_CAP_SYNC_REGS; pykvmm needs Linux 4.16 or newer")
        vcpu.enable_sync_regs(K.KVM_SYNC_X86_REGS | K.KVM_SYNC_X86_SREGS)
        self.kvm_stats = None
        if self.kvm.check_extension(K.KVM_CAP_BINARY_STATS_FD):
            from ..kvm.stats import StatsReader

            self.kvm_stats = StatsReader(vcpu.stats_fd())
        self._build_devices()
        if self.config.firmware is not None:
            self.mem.load(self.mem.rom_start, self.config.firmware)

    def _build_devices(self) -> None:
        """The PC device set, at the standard ISA ports (see layout.py)."""
        pio, resched = self.pio, self._reschedule
        self.debug_exit = DebugExit(self._on_debug_exit)
        pio.register(layout.PORT_DEBUG_EXIT, 1, self.debug_exit, "debug-exit")
        self.pic = pic = DualPic(on_int=self._on_intr)
        pio.register(layout.PIC_MASTER, 2, pic.master, "pic-master")
        pio.register(layout.PIC_SLAVE, 2, pic.slave, "pic-slave")
        self.pit = Pit8254(irq0=pic.line(layout.PIT_IRQ))
        pio.register(layout.PIT_BASE, 4, _NotifyOnWrite(self.pit, resched), "pit")
        self.port61 = Port61(self.pit)
        pio.register(layout.PORT_SYSCTL_B, 1, _NotifyOnWrite(self.port61, resched), "port61")
        self.cmos = Cmos(self.mem.size, irq=pic.line(layout.RTC_IRQ))
        pio.register(layout.CMOS_BASE, 2, _NotifyOnWrite(self.cmos, resched), "cmos")
        self.post = PostPort()
        pio.register(layout.PORT_POST, 1, self.post, "post")
        self.a20 = FastA20()
        pio.register(layout.PORT_A20, 1, self.a20, "a20")
        self.debugcon = DebugCon(self.debugcon_sink)
        pio.register(layout.PORT_DEBUGCON, 1, self.debugcon, "debugcon")
        self.uart = Uart16550(sink=self.serial, irq=pic.line(layout.COM1_IRQ))
        pio.register(layout.COM1_BASE, 8, self.uart, "com1")
        self.uart2 = Uart16550(sink=self.serial2, irq=pic.line(layout.MMIO_UART_IRQ))
        self.mmio.register(layout.MMIO_UART_BASE, 8, self.uart2, "uart-mmio")

    def _on_intr(self, level: bool) -> None:
        self._intr = level
        if level and self.on_event is not None:
            self.on_event()
        if level and self._kicker is not None and self.vcpu is not None:
            self._kicker.wake.set()  # a HLT sleep ends; KVM_RUN is not kicked (exits come anyway)

    def _reschedule(self) -> None:
        """Point the kicker at the earliest of the timeout and the devices' deadlines."""
        kicker = self._kicker
        if kicker is None:
            return
        when = self._timeout_at
        for d in (self.pit.deadline(), self.cmos.deadline()):
            if d is not None and (when is None or d < when):
                when = d
        self.next_deadline = when
        kicker.set_deadline(when)

    def _service_interrupts(self) -> None:
        """Inject the PIC's interrupt if the CPU can take it now, else ask for a window exit.

        With a userspace irqchip, KVM_INTERRUPT is allowed only while kvm_run says
        ready_for_interrupt_injection (IF=1 and no interrupt shadow); otherwise
        request_interrupt_window makes KVM exit as soon as it is (KVM_EXIT_IRQ_WINDOW_OPEN).
        """
        run = self.vcpu.kvm_run
        if not self.pic.has_interrupt():
            self._intr = False
            run.request_interrupt_window = 0
            return
        if run.ready_for_interrupt_injection and run.if_flag:
            self.vcpu.interrupt(self.pic.acknowledge())
            self.irqs_injected += 1
            self._intr = self.pic.has_interrupt()
            run.request_interrupt_window = 1 if self._intr else 0
        else:
            run.request_interrupt_window = 1

    def _on_debug_exit(self, value: int) -> None:
        status = value if self.config.exit_code == "plain" else ((value << 1) | 1) & 0xFF
        self.guest_exit_value = value
        self.request_stop(END_DEBUG_EXIT, status)

    def request_stop(self, end: str, status: int, detail: str = "") -> None:
        if self._stop is None:
            self._stop = (end, status)
            self._stop_detail = detail
            if self.on_event is not None:
                self.on_event()

    @property
    def stopping(self) -> bool:
        return self._stop is not None

    # -- guest loading and entry state ------------------------------------------------------------

    def load_guest(self, image: bytes) -> None:
        """Place a flat binary at 0x7C00 and set the entry contract (unless firmware runs first)."""
        if not image:
            raise UsageError("the guest image is empty")
        if len(image) > layout.GUEST_MAX_SIZE:
            raise UsageError(f"the guest image is {len(image)} bytes; at most {layout.GUEST_MAX_SIZE} "
                             f"fit between {layout.GUEST_LOAD_ADDR:#x} and {layout.CONV_RAM_END - 1:#x}")
        self.mem.load(layout.GUEST_LOAD_ADDR, image)
        if self.config.firmware is None:
            self.set_entry_state()

    def set_entry_state(self, regs: dict | None = None, segments: dict | None = None) -> None:
        """Real mode, CS=DS=ES=SS=FS=GS=0, IP=SP=0x7C00, RFLAGS=0x2, unless overridden.

        ``segments`` maps a segment name to its selector (base = selector * 16, limit 0xFFFF).
        """
        vcpu = self.vcpu
        sregs = vcpu.get_sregs()
        segs = {"cs": 0, "ds": 0, "es": 0, "fs": 0, "gs": 0, "ss": 0}
        segs.update(segments or {})
        for name, sel in segs.items():
            seg = getattr(sregs, name)
            seg.selector = sel
            seg.base = sel << 4
            seg.limit = 0xFFFF
            seg.type = _CODE_TYPE if name == "cs" else _DATA_TYPE
            seg.present, seg.s, seg.dpl, seg.db, seg.l, seg.g, seg.avl, seg.unusable = 1, 1, 0, 0, 0, 0, 0, 0
        sregs.cr0 &= ~1  # real mode (PE=0); KVM's reset value keeps CD/NW/ET as they are
        vcpu.set_sregs(sregs)
        r = vcpu.get_regs()
        for name in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11",
                     "r12", "r13", "r14", "r15"):
            setattr(r, name, 0)
        r.rip = layout.GUEST_LOAD_ADDR
        r.rsp = layout.GUEST_ENTRY_SP
        r.rflags = _RFLAGS_RESERVED1
        for name, value in (regs or {}).items():
            setattr(r, name, value)
        vcpu.set_regs(r)

    # -- the run loop -----------------------------------------------------------------------------

    def run(self, timeout: float | None = None) -> RunResult:
        """Run until the guest stops, faults, times out or is interrupted."""
        kicker = Kicker(self.vcpu)
        self._kicker = kicker
        kicker.start()
        want_input = self.config.serial_input
        if want_input is None:
            want_input = self.config.serial == "stdio"
        if want_input and self.input_pump is None:
            from .serial_input import InputPump

            try:
                fd = os.dup(0)
            except OSError:
                fd = -1
            if fd >= 0:
                self.input_pump = InputPump(fd, kicker.kick)
                # Only the registers that show the guest listening (RBR, LSR, IER) need
                # _Com1Input, and only when there is input; THR writes, the polled-output hot
                # path, always go straight to the UART (and LSR reads too without input).
                com1 = _Com1Input(self.uart, self)
                pio = self.pio
                pio.route(layout.COM1_BASE + _UART_RBR, read=com1.read)
                pio.route(layout.COM1_BASE + _UART_LSR, read=com1.read)
                pio.route(layout.COM1_BASE + _UART_IER, write=com1.write)
                self.input_pump.start()
        old_handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old_handlers[sig] = signal.signal(sig, self._on_signal)
            if early_stop.received:  # a signal during start-up: stop before the guest runs
                self._on_signal(early_stop.received[0], None)
        _gc_hold()
        start = time.perf_counter()
        if timeout is not None:
            self._timeout_at = time.monotonic_ns() + int(timeout * 1e9)
        self._reschedule()
        try:
            self._loop(kicker)
        finally:
            wall = time.perf_counter() - start
            _gc_release()
            if self.input_pump is not None:
                self.input_pump.stop()
            kicker.stop()
            self._kicker = None
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            if self.ring is not None:
                self.ring.drain()
            self.flush()
        end, status = self._stop or (END_ERROR, STATUS_FAULT)
        return RunResult(end, status, wall, self._stop_detail)

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            self.request_stop(END_INTERRUPT, STATUS_SIGINT, "interrupted by SIGINT")
        else:
            self.request_stop(END_INTERRUPT, STATUS_SIGTERM, "terminated by SIGTERM")
        self.vcpu.immediate_exit = 1

    def _loop(self, kicker) -> None:
        """KVM_RUN and dispatch until a stop is requested.

        This is the hottest loop in pykvmm, so port IO, by far the commonest exit, is decoded
        inline from the kvm_run page with one precompiled unpack and handled without building an
        exit value; everything else goes through ``Vcpu.decode_exit`` and ``handle_exit``.  Typed
        IoOut/IoIn values are still built when a coalescing engine wants them.  Measured here
        (scripts/bench_exits.py): a NamedTuple costs about 0.5 us and a method call 0.1 us on a
        budget of about 1.5 us of Python per exit.
        """
        vcpu = self.vcpu
        fd, page = vcpu.fd, vcpu.page
        run_ioctl = _libc_ioctl
        KVM_RUN = K.KVM_RUN
        hdr = _RUN_HDR.unpack_from
        pio = self.pio
        pio_read, pio_write = pio.read, pio.write
        from_bytes = int.from_bytes
        counts = self.exit_counts
        engine = self.engine
        # An engine may ask to sit out the run's first exits (its ``dormant``, see
        # coalesce/rental.py), and later ones (after_pio's and after_exit's return value, a
        # nap): until the ``wake``-th exit the loop does not call it at all.
        wake = _NEVER
        if engine is not None and getattr(engine, "dormant", 0) > 0:
            wake, engine = engine.dormant, None
            self._engine_dormant = True
        ring = self.ring
        # KVM puts port-IO data at KVM_PIO_PAGE_OFFSET (the page after kvm_run); the window is
        # checked against the mapping so a bad data_offset can never index outside it.
        page_limit = vcpu.page_size
        n_total = n_io = 0
        clock = time.perf_counter_ns
        eng_ns = eng_calls = 0
        nap = 0  # exits the engine asked to be left alone from this one on (see above)
        try:
            while self._stop is None:
                if run_ioctl(fd, KVM_RUN, 0) < 0:
                    err = ctypes.get_errno()
                    if ring is not None:
                        ring.drain()  # buffered writes precede the kick
                    if err != errno.EINTR and err != errno.EAGAIN:
                        raise KvmError(f"KVM_RUN failed: [Errno {err}] {os.strerror(err)}")
                    n_total += 1
                    counts["intr"] = counts.get("intr", 0) + 1
                    page[_IMMEDIATE_EXIT] = 0
                    self._after_kick(kicker)
                    continue
                n_total += 1
                if n_total >= wake:
                    wake, engine = _NEVER, self.engine
                    self._engine_dormant = False
                if ring is not None:
                    ring.drain()  # KVM's buffered writes happened before this exit
                reason, direction, size, port, count, off = hdr(page, _EXIT_REASON)
                if reason == _EXIT_IO and off + size * count <= page_limit:
                    n_io += 1
                    if direction:  # OUT
                        if count == 1:
                            pio_write(port, size, page[off] if size == 1 else
                                      from_bytes(page[off:off + size], "little"))
                        else:
                            for i in range(off, off + size * count, size):
                                pio_write(port, size, from_bytes(page[i:i + size], "little"))
                    else:  # IN: the value goes where KVM completes the instruction from
                        if count == 1:
                            if size == 1:
                                page[off] = pio_read(port, 1)
                            else:
                                page[off:off + size] = pio_read(port, size).to_bytes(size, "little")
                        else:
                            buf = bytearray()
                            for _ in range(count):
                                buf += pio_read(port, size).to_bytes(size, "little")
                            page[off:off + size * count] = buf
                    # direction is KVM_EXIT_IO_OUT (1) or KVM_EXIT_IO_IN (0), after_pio's own
                    # encoding; the device access above may have stopped the machine.
                    if engine is not None and self._stop is None:
                        t = clock()
                        nap = engine.after_pio(direction, port)
                        eng_ns += clock() - t
                        eng_calls += 1
                else:
                    self.handle_exit(vcpu.decode_exit())
                    nap, self._nap = self._nap, 0
                if nap:
                    wake, engine, nap = n_total + nap, None, 0
                    self._engine_dormant = True
                if self._intr:
                    self._service_interrupts()
        finally:
            self._engine_dormant = False
            self._nap = 0
            self.engine_ns += eng_ns
            self.engine_calls += eng_calls
            counts["total"] = counts.get("total", 0) + n_total
            counts["io"] = counts.get("io", 0) + n_io

    def _after_kick(self, kicker) -> None:
        """A kick arrived: signals, the timeout, device time, host input."""
        kicker.pending = False
        for signum in kicker.take_signals():
            if signum in (signal.SIGINT, signal.SIGTERM):
                self._on_signal(signum, None)
        if self._timeout_at is not None and time.monotonic_ns() >= self._timeout_at:
            self.request_stop(END_TIMEOUT, STATUS_TIMEOUT, "timeout")
            return
        self.pit.poll()
        self.cmos.poll()
        pump = self.input_pump
        if pump is not None and self.input_armed and (pump.pending or not pump.queue.empty()):
            pump.feed(self.uart)
        self._reschedule()
        if self._intr:
            self._service_interrupts()

    def _timed_after_exit(self, ex) -> None:
        t = time.perf_counter_ns()
        self._nap = self.engine.after_exit(ex) or 0
        self.engine_ns += time.perf_counter_ns() - t
        self.engine_calls += 1

    def handle_exit(self, ex) -> None:
        """Dispatch one exit that is not a port-IO or EINTR exit (and, for tests, any exit)."""
        counts = self.exit_counts
        match ex:
            case X.IoOut(port, size, count, data):
                counts["io"] = counts.get("io", 0) + 1
                for i in range(count):
                    self.pio.write(port, size, int.from_bytes(data[i * size:(i + 1) * size], "little"))
            case X.IoIn(port, size, count, off):
                counts["io"] = counts.get("io", 0) + 1
                buf = b"".join(self.pio.read(port, size).to_bytes(size, "little") for _ in range(count))
                self.vcpu.complete_in(ex, buf)
            case X.MmioWrite(addr, length, data):
                counts["mmio"] = counts.get("mmio", 0) + 1
                self.mmio.write(addr, length, int.from_bytes(data, "little"))
                if self.engine is not None and not self._engine_dormant and self._stop is None:
                    self._timed_after_exit(ex)
            case X.MmioRead(addr, length):
                counts["mmio"] = counts.get("mmio", 0) + 1
                self.vcpu.complete_mmio_read(self.mmio.read(addr, length).to_bytes(length, "little"))
                if self.engine is not None and not self._engine_dormant and self._stop is None:
                    self._timed_after_exit(ex)
            case X.Hlt():
                counts["hlt"] = counts.get("hlt", 0) + 1
                self._on_hlt()
            case X.Interrupted():
                counts["intr"] = counts.get("intr", 0) + 1
            case X.IrqWindowOpen():
                counts["irq_window"] = counts.get("irq_window", 0) + 1
                self._service_interrupts()
            case X.Shutdown():
                counts["shutdown"] = counts.get("shutdown", 0) + 1
                self._fault(END_SHUTDOWN, "shutdown (triple fault)")
            case X.InternalError(suberror, data, insn):
                counts["internal_error"] = counts.get("internal_error", 0) + 1
                what = K.INTERNAL_ERROR_NAMES.get(suberror, f"suberror {suberror}")
                extra = f" on bytes {insn.hex(' ')}" if insn else ""
                self._fault(END_ERROR, f"KVM internal error: {what}{extra}")
            case X.FailEntry(hw, cpu):
                counts["fail_entry"] = counts.get("fail_entry", 0) + 1
                self._fault(END_ERROR, f"VM entry failed: hardware reason {hw:#x} on cpu {cpu}")
            case X.Debug(exc, pc, _, _):
                counts["debug"] = counts.get("debug", 0) + 1
            case X.SystemEvent(kind):
                counts["system_event"] = counts.get("system_event", 0) + 1
                self._fault(END_SHUTDOWN, f"system event {kind}")
            case X.Unsupported(reason, name):
                counts["unsupported"] = counts.get("unsupported", 0) + 1
                self._fault(END_ERROR, f"unsupported exit: {name}")
            case _:
                raise TypeError(f"not an exit value: {ex!r}")

    def _on_hlt(self) -> None:
        """HLT: with IF=0 the run ends; with IF=1 sleep until an interrupt can be injected.

        The sleep waits on the kicker's wake event, set by a device deadline, host input, a signal
        or the PIC raising INTR, so a guest idling in ``sti; hlt`` costs no host CPU between
        ticks.  With a userspace irqchip KVM leaves the vCPU runnable after a HLT exit: the next
        KVM_RUN resumes after the HLT, so the interrupt is injected before re-entering.
        """
        if not self.vcpu.sync.regs.rflags & _RFLAGS_IF:
            self.request_stop(END_HALT, 0, "HLT with interrupts disabled")
            return
        kicker = self._kicker
        if kicker is None:  # unit tests drive handle_exit without a run
            self.request_stop(END_HALT, 0, "HLT with no interrupt source")
            return
        # The guest is idle: let whoever reads its output (a pipe, a file) see it now.
        self.flush()
        injected = self.irqs_injected
        while self._stop is None:
            if self._intr:
                self._service_interrupts()
            if self.irqs_injected != injected:
                return  # re-enter: the guest takes the interrupt and resumes after its HLT
            kicker.wake.wait()
            kicker.wake.clear()
            self.vcpu.immediate_exit = 0
            self._after_kick(kicker)  # polls the devices, may inject

    def _fault(self, end: str, why: str) -> None:
        from .report import fault_report

        regs = self.final_regs()
        code = None
        try:
            # CS base + RIP is the linear address in every mode; without paging (pykvmm never
            # enables it) that is the physical address of the faulting bytes.
            linear = (self.vcpu.sync.sregs.cs.base + regs["rip"]) & 0xFFFFFFFF
            if 0 <= linear < self.mem.size:
                code = bytes(self.mem.ram[linear:min(linear + 16, self.mem.size)])
        except Exception:  # the report must never fail
            code = None
        self.request_stop(end, STATUS_FAULT, fault_report(why, regs, code))

    # -- results ----------------------------------------------------------------------------------

    def final_regs(self) -> dict:
        """GPRs, rip, rflags and segment selectors from the last exit's sync-regs copy."""
        r = self.vcpu.sync.regs
        s = self.vcpu.sync.sregs
        out = {n: getattr(r, n) for n in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
                                           "rip", "rflags")}
        for seg in ("cs", "ds", "es", "fs", "gs", "ss"):
            out[seg] = getattr(s, seg).selector
        out["cr0"] = s.cr0
        return out

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()

    def stats(self, result: RunResult) -> dict:
        """The run's figures, in the stats-JSON schema documented in the README."""
        io_by_port = {f"{port:#x}": n for port, n in sorted(self.pio.io_ops.items())}
        mmio_by_addr = {f"{addr:#x}": n for addr, n in sorted(self.mmio.io_ops.items())}
        exits = {"total": 0, "io": 0, "mmio": 0, "hlt": 0, "intr": 0}
        exits.update(self.exit_counts)
        engine = self.engine
        return {
            "end": result.end,
            "exit_status": result.exit_status,
            "wall_s": round(result.wall_s, 6),
            "exits": exits,
            "kvm_stats": self.kvm_stats.read() if self.kvm_stats is not None else {},
            "io_ops": {"total": sum(self.pio.io_ops.values()) + sum(self.mmio.io_ops.values()),
                       "by_port": io_by_port, "mmio_by_addr": mmio_by_addr},
            "unclaimed": {"reads": {f"{p:#x}": n for p, n in sorted(self.pio.unclaimed_reads.items())},
                          "writes": {f"{p:#x}": n for p, n in sorted(self.pio.unclaimed_writes.items())}},
            "serial_bytes": self.serial.count,
            "serial2_bytes": self.serial2.count,
            "debugcon_bytes": self.debugcon_sink.count,
            "irqs_injected": self.irqs_injected,
            "post_codes": self.post.state(),
            "coalesce": ({**engine.stats(), "engine_us": round(self.engine_ns / 1e3, 1),
                          "engine_calls": self.engine_calls}
                         if engine is not None else {"policy": "off"}),
            "final_regs": self.final_regs(),
        }

    def close(self) -> None:
        self.flush()
        for s in self.sinks:
            s.close()
        if self.kvm_stats is not None:
            self.kvm_stats.close()
            self.kvm_stats = None
        if self.vm is not None:
            self.vm.close()
            self.vm = None
        self.mem.close()
        if self._owns_kvm:
            self.kvm.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["Machine", "MachineConfig", "RunResult"]
