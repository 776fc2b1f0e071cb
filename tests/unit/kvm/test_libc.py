"""The shared ioctl wrapper: EINTR on a set-up ioctl is retried, other errors are raised."""

import ctypes
import errno

import pytest

from pykvmm.errors import KvmError
from pykvmm.kvm import _libc


def _fake_ioctl(results):
    """An ioctl stand-in returning ``results`` in turn; -N means fail with errno N."""
    calls = []

    def fake(fd, request, arg):
        r = results[len(calls)]
        calls.append((fd, request))
        if r < 0:
            ctypes.set_errno(-r)
            return -1
        ctypes.set_errno(0)
        return r

    return fake, calls


def test_eintr_is_retried_until_the_call_completes(monkeypatch):
    fake, calls = _fake_ioctl([-errno.EINTR, -errno.EINTR, 7])
    monkeypatch.setattr(_libc, "ioctl", fake)
    assert _libc.call(3, 0xAE01, 0, "KVM_CREATE_VM") == 7
    assert len(calls) == 3


def test_other_errors_are_raised_with_the_ioctl_name(monkeypatch):
    fake, calls = _fake_ioctl([-errno.EINTR, -errno.ENOMEM])
    monkeypatch.setattr(_libc, "ioctl", fake)
    with pytest.raises(KvmError, match=r"KVM_CREATE_VM failed: \[Errno 12\]"):
        _libc.call(3, 0xAE01, 0, "KVM_CREATE_VM")
    assert len(calls) == 2
