"""The one ctypes handle on libc's ioctl, and the error wrapping every ioctl shares."""

import ctypes
import errno
import os

from ..errors import KvmError

libc = ctypes.CDLL(None, use_errno=True)
ioctl = libc.ioctl
ioctl.restype = ctypes.c_int
# Variadic in C; ctypes passes an int or a pointer (byref / c_void_p) as given.


def check(ret: int, name: str) -> int:
    """Raise KvmError naming the ioctl when it returned -1."""
    if ret < 0:
        err = ctypes.get_errno()
        raise KvmError(f"{name} failed: [Errno {err}] {os.strerror(err)}")
    return ret


def call(fd: int, request: int, arg, name: str) -> int:
    # ctypes passes a bare Python int to a variadic function as a C int: a value such as
    # 0xFFFBD000 would arrive sign-extended, so integers go as unsigned long.
    if isinstance(arg, int):
        arg = ctypes.c_ulong(arg)
    # A signal landing during a set-up ioctl (KVM_CREATE_VM takes milliseconds; a profiler or
    # the kicker may signal the thread meanwhile) makes it fail with EINTR before it has done
    # anything, so it is simply issued again.  KVM_RUN does not come through here: its EINTR
    # means "kicked" and is handled by the run loop.
    while True:
        ret = ioctl(fd, request, arg)
        if ret >= 0 or ctypes.get_errno() != errno.EINTR:
            return check(ret, name)
