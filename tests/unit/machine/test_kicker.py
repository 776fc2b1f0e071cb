"""Kicker._outrank: what it asks the scheduler for, and the warning where it cannot.

The scheduler calls are replaced by a fake with Linux's documented behaviour (sched(7)): a
thread under SCHED_FIFO/SCHED_RR keeps its policy, priorities run 1-99, and raising the
priority without CAP_SYS_NICE beyond RLIMIT_RTPRIO fails with EPERM.  The real-time effect
itself (a timeout landing on one CPU) is tested against KVM in tests/kvm/test_boot.py.
"""

from __future__ import annotations

import errno
import os

import pytest

from pykvmm.machine import kicker as kmod


class FakeSched:
    def __init__(self, policy, prio, allowed=True):
        self.policy, self.prio, self.allowed = policy, prio, allowed
        self.set_calls = []

    def install(self, monkeypatch):
        monkeypatch.setattr(kmod.os, "sched_getscheduler", lambda pid: self.policy)
        monkeypatch.setattr(kmod.os, "sched_getparam", lambda pid: os.sched_param(self.prio))
        monkeypatch.setattr(kmod.os, "sched_get_priority_max", lambda policy: 99)
        monkeypatch.setattr(kmod.os, "sched_setscheduler", self.set)

    def set(self, pid, policy, param):
        self.set_calls.append((pid, policy, param.sched_priority))
        if not self.allowed:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
        self.policy, self.prio = policy, param.sched_priority


def outrank(monkeypatch, policy, prio, allowed=True) -> FakeSched:
    """Kicker._outrank run against a fake scheduler in that state; the fake, to inspect."""
    fake = FakeSched(policy, prio, allowed)
    fake.install(monkeypatch)
    kmod.Kicker._outrank(object.__new__(kmod.Kicker))
    return fake


def one_warning(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pykvmm: warning:")
    return err


@pytest.mark.parametrize("policy", [os.SCHED_FIFO, os.SCHED_RR])
def test_raises_one_above_the_vcpu(monkeypatch, capsys, policy):
    fake = outrank(monkeypatch, policy, 50)
    assert fake.set_calls == [(0, policy, 51)]
    assert capsys.readouterr().err == ""


def test_normal_policy_is_left_alone(monkeypatch, capsys):
    fake = outrank(monkeypatch, os.SCHED_OTHER, 0)
    assert fake.set_calls == []
    assert capsys.readouterr().err == ""


def test_top_priority_warns_once_without_trying(monkeypatch, capsys):
    fake = outrank(monkeypatch, os.SCHED_FIFO, 99)
    assert fake.set_calls == []
    err = one_warning(capsys)
    assert "top priority, 99" in err and "below it" in err


def test_forbidden_raise_says_what_to_do(monkeypatch, capsys):
    fake = outrank(monkeypatch, os.SCHED_FIFO, 10, allowed=False)
    assert fake.set_calls == [(0, os.SCHED_FIFO, 11)]
    err = one_warning(capsys)
    assert "RLIMIT_RTPRIO above 10" in err and "top priority" not in err
