"""The PC physical memory map and fixed addresses, in one place.

Every magic address pykvmm uses lives here with where it comes from.
"""

KIB = 1024
MIB = 1024 * KIB

# Conventional RAM: 0 .. 640 KiB (the IBM PC map; the EBDA and video hole start at 0xA0000).
CONV_RAM_END = 0xA0000
# The legacy video / device hole 0xA0000-0xBFFFF. pykvmm keeps it unbacked so that accesses
# exit to userspace as KVM_EXIT_MMIO; the memory-mapped UART lives here.
MMIO_HOLE_START = 0xA0000
MMIO_HOLE_END = 0xC0000
# Option-ROM area 0xC0000-0xEFFFF: unbacked for pykvmm's own firmware, RAM under --bios.
OPTION_ROM_START = 0xC0000
# pykvmm's firmware: 64 KiB at 0xF0000 (segment F000), read-only.
BIOS_START = 0xF0000
BIOS_SIZE = 64 * KIB
# 1 MiB: extended memory starts here.
EXT_RAM_START = 0x100000
# After reset the CPU fetches from physical 0xFFFFFFF0: CS selector 0xF000 with base 0xFFFF0000
# (Intel SDM vol. 3, 9.1.4). The firmware is therefore aliased just below 4 GiB.
RESET_ALIAS_TOP = 0x1_0000_0000

# The guest entry contract: a flat binary loaded here, entered at 0000:7C00 (the boot-sector address).
GUEST_LOAD_ADDR = 0x7C00
GUEST_MAX_SIZE = CONV_RAM_END - GUEST_LOAD_ADDR
GUEST_ENTRY_SP = 0x7C00

# Identity-map page and TSS for Intel hosts without unrestricted guest (KVM_SET_TSS_ADDR needs
# three pages below 4 GiB that the guest never uses; just under the reset alias is the usual spot).
TSS_ADDR = 0xFFFB_D000
IDENTITY_MAP_ADDR = 0xFFFB_C000

DEFAULT_MEM_MIB = 16
MIN_MEM_MIB = 2  # real mode reaches 0x10FFEF, so RAM must extend past 1 MiB + 64 KiB
MAX_MEM_MIB = 3 * 1024  # stay below the PCI hole / reset alias at 3 GiB+

# Ports and IRQ lines of the devices pykvmm wires up: the IBM PC/AT assignments.
PORT_DEBUG_EXIT = 0xF4  # QEMU's isa-debug-exit default iobase, so guests run on both
PIC_MASTER = 0x20
PIC_SLAVE = 0xA0
PIT_BASE = 0x40
PIT_IRQ = 0
PORT_SYSCTL_B = 0x61  # system control port B: PIT channel 2 gate/speaker, refresh toggle
CMOS_BASE = 0x70  # index (bit 7 masks NMI), data at 0x71
RTC_IRQ = 8
PORT_POST = 0x80  # POST diagnostic codes
PORT_A20 = 0x92  # "fast A20" system control port A
PORT_DEBUGCON = 0x402  # the debug console SeaBIOS and QEMU use; reads 0xE9
COM1_BASE = 0x3F8
COM1_IRQ = 4
MMIO_UART_BASE = 0xB0000  # the second 16550, memory-mapped inside the device hole, stride 1
MMIO_UART_IRQ = 3  # COM2's line
