"""The emulator's contract: every stop reason, memory and IO routing, the decode cache, the
CPU-state mapping, and capstone's known 16-bit pitfalls (one regression test each)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from pykvmm.machine.bus import MmioBus, PortBus
from pykvmm.machine.memory import GuestMemory
from pykvmm.x86 import CpuState, Emulator, plain_real_mode, stops

from conftest import FlatMemory

CODE = 0x7C00


class Recorder:
    """A byte device that records accesses and answers reads from a fixed table."""

    def __init__(self, reads: dict[int, int] | None = None):
        self.log: list[tuple[str, int, int]] = []
        self.reads = reads or {}

    def read(self, offset: int) -> int:
        v = self.reads.get(offset, 0x5A)
        self.log.append(("r", offset, v))
        return v

    def write(self, offset: int, value: int) -> None:
        self.log.append(("w", offset, value))


def machine(code: bytes, *, mem=None, **regs):
    mem = mem or GuestMemory(2 << 20)
    mem.load(CODE, code)
    pio, mmio = PortBus(), MmioBus()
    emu = Emulator(mem, pio, mmio)
    regs.setdefault("esp", 0x7000)
    cpu = CpuState(ip=CODE, **regs)
    return emu, cpu, mem, pio, mmio


# -- stop reasons ---------------------------------------------------------------------------------

def test_budget_stops_exactly():
    emu, cpu, *_ = machine(bytes.fromhex("40ebfd"))  # inc ax; jmp back
    stop = emu.run(cpu, max_insns=1001)
    assert (stop.reason, stop.insns, cpu.ax, cpu.ip) == (stops.BUDGET, 1001, 501, CODE + 1)


def test_left_range_stops_before_the_instruction():
    emu, cpu, *_ = machine(bytes.fromhex("404040f4"))
    stop = emu.run(cpu, max_insns=100, lo=CODE, hi=CODE + 2)
    assert (stop.reason, stop.insns, cpu.ip, cpu.ax) == (stops.LEFT_RANGE, 2, CODE + 2, 2)


def test_extent_counts_from_the_last_io():
    # out 0x80, al; then 7 incs; io_window 5 stops 5 instructions after the OUT
    emu, cpu, *_ = machine(bytes.fromhex("e680" + "40" * 7 + "f4"))
    stop = emu.run(cpu, max_insns=100, io_window=5)
    assert (stop.reason, stop.insns, stop.ios, cpu.ax) == (stops.EXTENT, 6, 1, 5)


@pytest.mark.parametrize("code,reason", [
    ("27", stops.UNSUPPORTED),          # DAA: outside coverage
    ("0fa2", stops.UNSUPPORTED),        # CPUID
    ("cd10", stops.PRIVILEGED),         # INT 10h
    ("cf", stops.PRIVILEGED),           # IRET
    ("ea00000000", stops.PRIVILEGED),   # far JMP
    ("0f011e0000", stops.PRIVILEGED),   # LIDT
    ("0f20c0", stops.PRIVILEGED),       # MOV EAX, CR0
    ("f4", stops.HALT),
    ("fb", stops.SHADOW),               # STI
    ("8ed0", stops.SHADOW),             # MOV SS, AX
    ("17", stops.SHADOW),               # POP SS
    ("8dc0", stops.FAULT),              # LEA with a register operand: #UD
    ("8ec8", stops.FAULT),              # MOV CS, AX: #UD
    ("f0 0100".replace(" ", ""), stops.UNSUPPORTED),  # LOCK prefix
    ("f390", stops.UNSUPPORTED),        # PAUSE (REP on a non-string opcode)
])
def test_refusals_stop_before_with_no_effect(code, reason):
    emu, cpu, *_ = machine(bytes.fromhex("40" + code))
    before = None
    stop = emu.run(cpu, max_insns=100)
    assert stop.reason == reason and stop.insns == 1
    before = cpu.copy()
    assert emu.run(cpu, max_insns=100).reason == reason  # stable: nothing changed
    assert cpu == before and cpu.ip == CODE + 1


@pytest.mark.parametrize("code,regs", [
    ("a1ffff", {}),                         # word at offset 0xFFFF crosses the limit (#GP)
    ("8b07", {"ebx": 0xFFFF}),              # the same through a register
    ("f7f1", {"eax": 5, "ecx": 0}),         # DIV by zero (#DE)
    ("f7f1", {"eax": 0, "edx": 5, "ecx": 2}),  # quotient overflow (#DE)
    ("a00000", {"ds": 0xA000}),             # read from the unbacked video hole
    ("a20000", {"ds": 0xF000}),             # write to the firmware ROM
    ("50", {"esp": 1}),                     # push at SP=1 writes across the limit (#SS)
])
def test_faults_are_refused_before_the_instruction(code, regs):
    emu, cpu, *_ = machine(bytes.fromhex(code), **regs)
    before = cpu.copy()
    stop = emu.run(cpu, max_insns=10)
    assert (stop.reason, stop.insns) == (stops.FAULT, 0)
    assert cpu == before


def test_rom_reads_are_fine():
    mem = GuestMemory(2 << 20)
    mem.load(0xF0010, b"\x34\x12")
    emu, cpu, *_ = machine(bytes.fromhex("a11000f4"), mem=mem, ds=0xF000)
    assert emu.run(cpu, max_insns=10).reason == stops.HALT and cpu.ax == 0x1234


def test_extended_memory_without_a20_wrap():
    emu, cpu, mem, *_ = machine(bytes.fromhex("a3fdfff4"), eax=0xBEEF, ds=0xFFFF)
    assert emu.run(cpu, max_insns=10).reason == stops.HALT
    assert mem.ram[0x10FFED:0x10FFEF] == b"\xef\xbe"  # 0xFFFF0 + 0xFFFD, not wrapped to 0xFFED
    assert mem.ram[0xFFED:0xFFEF] == b"\0\0"


def test_self_modifying_code_stops_right_after_the_write():
    # top: inc ax; mov byte [cs:top], 0x41 (inc cx); hlt -- rewrites code already fetched
    code = bytes.fromhex("40" "2ec606007c41" "f4")
    emu, cpu, mem, *_ = machine(code)
    stop = emu.run(cpu, max_insns=100)
    assert (stop.reason, stop.insns, cpu.ip, cpu.ax) == (stops.SMC, 2, CODE + 7, 1)
    cpu.ip = CODE
    emu.run(cpu, max_insns=100)  # the new bytes run: INC CX, not INC AX
    assert (cpu.ax, cpu.cx) == (1, 1)


def test_writes_to_the_next_instruction_run_the_new_bytes():
    # mov byte [cs:next], 0x41; next: inc ax (rewritten to inc cx before it executes); hlt.
    # A compiled block may already hold the old INC AX: then the run stops right after the
    # write ("smc") and the next run fetches the new bytes; either way INC CX is what runs.
    emu, cpu, mem, *_ = machine(bytes.fromhex("2ec606067c41" "40" "f4"))
    stop = emu.run(cpu, max_insns=100)
    if stop.reason == stops.SMC:
        assert (stop.insns, cpu.ip) == (1, CODE + 6)
        stop = emu.run(cpu, max_insns=100)
    assert stop.reason == stops.HALT and (cpu.ax, cpu.cx) == (0, 1)


def test_code_changed_between_runs_is_never_stale():
    emu, cpu, mem, *_ = machine(bytes.fromhex("40f4"))
    emu.run(cpu, max_insns=10)
    mem.load(CODE, bytes.fromhex("41f4"))  # the guest rewrote it while running natively
    cpu.ip = CODE
    emu.run(cpu, max_insns=10)
    assert (cpu.ax, cpu.cx) == (1, 1)


def test_trap_flag_refuses_at_once_and_popf_setting_it_is_refused():
    emu, cpu, *_ = machine(bytes.fromhex("40f4"), flags=0x102)
    assert emu.run(cpu, max_insns=10).reason == stops.TRAP_FLAG and cpu.ax == 0
    # push 0x102; popf
    emu, cpu, *_ = machine(bytes.fromhex("6802019df4"))
    stop = emu.run(cpu, max_insns=10)
    assert (stop.reason, stop.insns, cpu.ip) == (stops.TRAP_FLAG, 1, CODE + 3)


def test_popf_that_enables_interrupts_is_left_to_kvm():
    emu, cpu, *_ = machine(bytes.fromhex("6802029df4"), flags=0x2)
    stop = emu.run(cpu, max_insns=10)
    assert (stop.reason, stop.insns) == (stops.IRQ_WINDOW, 1)
    emu, cpu, *_ = machine(bytes.fromhex("6802029df4"), flags=0x202)  # IF already set: fine
    assert emu.run(cpu, max_insns=10).reason == stops.HALT


def test_deadline():
    emu, cpu, *_ = machine(bytes.fromhex("40ebfd"))
    assert emu.run(cpu, max_insns=10, deadline_ns=time.monotonic_ns() - 1).reason == stops.DEADLINE
    stop = emu.run(cpu, max_insns=10**9, deadline_ns=time.monotonic_ns() + 20_000_000)
    assert stop.reason == stops.DEADLINE and stop.insns > 0


def test_not_plain_real_mode_is_refused():
    seg = dict(base=0, limit=0xFFFF, selector=0)
    sregs = SimpleNamespace(cr0=0, **{n: SimpleNamespace(**seg) for n in
                                      ("cs", "ds", "es", "fs", "gs", "ss")})
    assert plain_real_mode(sregs)
    sregs.cs = SimpleNamespace(base=0xFFFF0000, limit=0xFFFF, selector=0xF000)  # after reset
    assert not plain_real_mode(sregs)
    regs = SimpleNamespace(rax=0, rbx=0, rcx=0, rdx=0, rsi=0, rdi=0, rsp=0, rbp=0, rip=0xFFF0,
                           rflags=2)
    emu, cpu, *_ = machine(b"\x90")
    cpu.load(regs, sregs)
    assert emu.run(cpu, max_insns=10).reason == stops.MODE


# -- state mapping --------------------------------------------------------------------------------

def test_load_and_store_keep_the_upper_halves():
    seg = {n: SimpleNamespace(base=0x1230, limit=0xFFFF, selector=0x123) for n in
           ("cs", "ds", "es", "fs", "gs", "ss")}
    sregs = SimpleNamespace(cr0=0x10, **seg)
    regs = SimpleNamespace(rax=0xAAAA_0000_1234_5678, rbx=0, rcx=0xFFFF, rdx=0, rsi=0, rdi=0,
                           rsp=0x100, rbp=0, rip=0x10, rflags=0x202)
    cpu = CpuState()
    cpu.load(regs, sregs)
    assert (cpu.eax, cpu.ax, cpu.ah, cpu.ds_base, cpu.plain) == (0x12345678, 0x5678, 0x56, 0x1230, True)
    cpu.eax = 0x87654321
    cpu.ip = 0x20
    cpu.store(regs)
    assert (regs.rax, regs.rip) == (0xAAAA_0000_8765_4321, 0x20)


# -- IO and MMIO routing --------------------------------------------------------------------------

def test_port_io_goes_through_the_bus_once_per_access():
    dev = Recorder({5: 0x60})
    emu, cpu, mem, pio, _ = machine(bytes.fromhex("ec" "ee" "f4"), edx=0x3FD)
    pio.register(0x3F8, 8, dev, "uart")
    stop = emu.run(cpu, max_insns=10)
    assert (stop.reason, stop.ios, cpu.al) == (stops.HALT, 2, 0x60)
    assert dev.log == [("r", 5, 0x60), ("w", 5, 0x60)] and pio.io_ops == {0x3FD: 2}


def test_rep_outsb_is_one_bus_operation_per_element_in_both_directions():
    dev = Recorder()
    emu, cpu, mem, pio, _ = machine(bytes.fromhex("f36e" "fd" "be0280" "b90300" "f36e" "f4"),
                                    ecx=3, esi=0x8000, edx=0x80)
    mem.load(0x8000, b"abc")
    pio.register(0x80, 1, dev)
    stop = emu.run(cpu, max_insns=100)
    assert stop.reason == stops.HALT and stop.ios == 6 and pio.io_ops == {0x80: 6}
    assert [v for _, _, v in dev.log] == list(b"abccba")
    assert (cpu.cx, cpu.si) == (0, 0x7FFF)


def test_mmio_reads_and_writes_are_routed_and_counted():
    dev = Recorder({0: 0x77})
    emu, cpu, mem, pio, mmio = machine(bytes.fromhex("a00000" "a20100" "40" "f4"), ds=0xB000)
    mmio.register(0xB0000, 8, dev, "mmio-uart")
    stop = emu.run(cpu, max_insns=10, io_window=1)
    assert (stop.reason, stop.insns, stop.ios, cpu.al) == (stops.EXTENT, 3, 2, 0x78) or \
        (stop.reason, stop.insns, stop.ios) == (stops.HALT, 3, 2)
    assert dev.log == [("r", 0, 0x77), ("w", 1, 0x77)] and mmio.io_ops == {0xB0000: 1, 0xB0001: 1}


# -- capstone's 16-bit pitfalls (issue 4) ---------------------------------------------------------

def test_pitfall_branch_targets_wrap_to_16_bits():
    mem = FlatMemory()
    mem.load(0x100, bytes.fromhex("e975fe"))
    emu = Emulator(mem, PortBus(), MmioBus())
    cpu = CpuState(ip=0x100)
    emu.run(cpu, max_insns=1)
    assert cpu.ip == 0xFF78  # capstone reports 0xffffff78


def test_pitfall_98_99_depend_on_operand_size_not_mnemonic():
    emu, cpu, *_ = machine(bytes.fromhex("98" "99" "f4"), eax=0xABCD_0080)
    emu.run(cpu, max_insns=10)
    assert (cpu.eax, cpu.edx) == (0xABCD_FF80, 0xFFFF)  # CBW, CWD (capstone says cwde, cdq)
    emu, cpu, *_ = machine(bytes.fromhex("6698" "6699" "f4"), eax=0x8000)
    emu.run(cpu, max_insns=10)
    assert (cpu.eax, cpu.edx) == (0xFFFF_8000, 0xFFFF_FFFF)


def test_pitfall_lds_les_read_offset_and_selector():
    emu, cpu, mem, *_ = machine(bytes.fromhex("c43e0480" "c5360080" "f4"))
    mem.load(0x8000, bytes.fromhex("3412cdab" "7856efbe"))
    emu.run(cpu, max_insns=10)
    assert (cpu.si, cpu.ds, cpu.ds_base, cpu.di, cpu.es) == (0x1234, 0xABCD, 0xABCD0, 0x5678, 0xBEEF)


def test_pitfall_bp_addressing_defaults_to_ss():
    emu, cpu, mem, *_ = machine(bytes.fromhex("8b4602" "8b4702" "f4"), ebp=0x10, ebx=0x10,
                                ss=0x900, ds=0x800)
    mem.load(0x9012, b"\x11\x11")
    mem.load(0x8012, b"\x22\x22")
    emu.run(cpu, max_insns=10)
    assert (cpu.ax,) == (0x2222,)  # the second load (DS) overwrote the first (SS)
    emu, cpu, mem, *_ = machine(bytes.fromhex("8b4602" "f4"), ebp=0x10, ss=0x900, ds=0x800)
    mem.load(0x9012, b"\x11\x11")
    emu.run(cpu, max_insns=10)
    assert cpu.ax == 0x1111


def test_pitfall_immediates_are_read_from_the_bytes():
    # add ax, 0x0080 (imm16, not sign-extended); add bx, -1 (83: imm8 sign-extended);
    # push -1 (6a); and cx, 0xff00 (81)
    emu, cpu, *_ = machine(bytes.fromhex("058000" "83c3ff" "6aff" "81e100ff" "f4"),
                           ecx=0x1234, esp=0x7000)
    emu.run(cpu, max_insns=10)
    assert (cpu.ax, cpu.bx, cpu.cx, cpu.sp) == (0x80, 0xFFFF, 0x1200, 0x6FFE)


def test_pitfall_f2_movs_is_rep_not_repne():
    emu, cpu, mem, *_ = machine(bytes.fromhex("f2a4" "f4"), ecx=4, esi=0x8000, edi=0x9000,
                                flags=0x42)  # ZF set: a REPNE would stop after one byte
    mem.load(0x8000, b"wxyz")
    emu.run(cpu, max_insns=100)
    assert bytes(mem.ram[0x9000:0x9004]) == b"wxyz" and cpu.cx == 0


def test_pitfall_decoding_is_cached():
    emu, cpu, *_ = machine(bytes.fromhex("40ebfd"))
    emu.run(cpu, max_insns=1000)
    compiled = emu.compiled
    emu.run(cpu, max_insns=1000)
    assert emu.compiled == compiled  # no decoding or compiling on the second run
    assert emu.decode(cpu, CODE) is emu.decode(0, CODE)


# -- the decode API for the scanning unit ---------------------------------------------------------

def test_decode_reports_length_pio_support_and_accesses():
    emu, cpu, mem, *_ = machine(bytes.fromhex("ec" "8b4702" "f3a4" "cd10"), ebx=0x10, ds=0xB000,
                                esi=5, edi=7, es=0x100)
    i = emu.decode(cpu, CODE)
    assert (i.length, i.bytes, i.is_pio, i.supported) == (1, b"\xec", True, True)
    i = emu.decode(cpu, CODE + 1)
    assert (i.length, i.is_pio, i.accesses(cpu.s)) == (3, False, [(0xB0012, 2)])
    i = emu.decode(cpu, CODE + 4)
    assert i.accesses(cpu.s) == [(0xB0005, 1), (0x1007, 1)]
    i = emu.decode(cpu, CODE + 6)
    assert (i.supported, i.reason, i.length) == (False, stops.PRIVILEGED, 2)


def test_request_stop_from_a_device_stops_right_after_that_io_even_inside_a_block():
    class Stopper:
        def __init__(self):
            self.emu = None

        def read(self, offset):
            return 0

        def write(self, offset, value):
            self.emu.request_stop()

    # out 0xf4, al; inc ax; inc ax; hlt -- the OUT asks for a stop: the INCs must not run
    emu, cpu, mem, pio, _ = machine(bytes.fromhex("e6f4" "40" "40" "ebfa"))
    dev = Stopper()
    dev.emu = emu
    pio.register(0xF4, 1, dev)
    stop = emu.run(cpu, max_insns=1000)
    assert (stop.reason, stop.insns, stop.ios, cpu.ip, cpu.ax) == (stops.REQUESTED, 1, 1, CODE + 2, 0)
    stop = emu.run(cpu, max_insns=1000)  # the next run starts afresh
    assert (stop.reason, stop.insns, cpu.ip, cpu.ax) == (stops.REQUESTED, 4, CODE + 2, 2)
