"""pykvmm: a userspace virtual machine monitor for Linux KVM that coalesces IO exits.

Layers, lowest first (a lower layer never imports a higher one):
    pykvmm.kvm       KVM binding: ioctls, structs, typed exits
    pykvmm.devices   device models (know nothing of buses or KVM)
    pykvmm.machine   guest memory, buses, the run loop
    pykvmm.x86       the real-mode x86 emulator used for coalesced blocks
    pykvmm.coalesce  the coalescing engine (the patent's units)
    pykvmm.cli       command line and measurement
"""

__version__ = "0.1.0"
