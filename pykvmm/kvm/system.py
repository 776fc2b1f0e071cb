"""Kvm: the /dev/kvm handle. It creates Vm objects (one owning wrapper per fd level)."""

from __future__ import annotations

import ctypes
import errno
import os

from ..errors import KvmError, KvmUnavailableError
from . import ioctls as K
from ._libc import call
from .structs import KvmCpuidEntry2, kvm_cpuid2

KVM_DEVICE = "/dev/kvm"


class Kvm:
    """An open /dev/kvm. Raises KvmUnavailableError with what to do when that is impossible."""

    def __init__(self, path: str | None = None):
        # PYKVMM_KVM_DEVICE points pykvmm at another device node (tests use it to show the
        # "KVM missing" error without unloading the module).
        path = path or os.environ.get("PYKVMM_KVM_DEVICE", KVM_DEVICE)
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KvmUnavailableError(
                f"KVM is not available on this host: {path} does not exist; load the kvm module "
                "(modprobe kvm_intel or kvm_amd) and enable virtualization in the firmware") from None
        except PermissionError:
            raise KvmUnavailableError(
                f"permission denied opening {path}: run as root or add your user to the 'kvm' group"
            ) from None
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise KvmUnavailableError(f"{path} is busy: another hypervisor holds the CPU's "
                                          "virtualization extensions; stop it and retry") from None
            raise KvmUnavailableError(f"cannot open {path}: {e.strerror}") from None
        version = call(self.fd, K.KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")
        if version != K.KVM_API_VERSION:
            os.close(self.fd)
            raise KvmUnavailableError(f"unsupported KVM API version {version} (need {K.KVM_API_VERSION})")
        self.vcpu_mmap_size = call(self.fd, K.KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE")

    def check_extension(self, cap: int) -> int:
        return call(self.fd, K.KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION")

    def supported_cpuid(self) -> ctypes.Structure:
        """KVM_GET_SUPPORTED_CPUID, growing the buffer while the kernel answers E2BIG."""
        n = 64
        while True:
            cpuid = kvm_cpuid2(n)
            try:
                call(self.fd, K.KVM_GET_SUPPORTED_CPUID, ctypes.byref(cpuid), "KVM_GET_SUPPORTED_CPUID")
                return cpuid
            except KvmError as e:
                # E2BIG: the kernel has more entries than the buffer holds; grow it (bounded).
                if f"[Errno {errno.E2BIG}]" not in str(e) or n >= 4096:
                    raise
                n *= 2

    def create_vm(self):
        from .vm import Vm

        fd = call(self.fd, K.KVM_CREATE_VM, 0, "KVM_CREATE_VM")
        return Vm(self, fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["Kvm", "KvmCpuidEntry2", "KVM_DEVICE"]
