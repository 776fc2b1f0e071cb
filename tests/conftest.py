"""Test-wide rules.

Tests marked ``kvm`` need a usable /dev/kvm.  Without one they skip, except when
PYKVMM_REQUIRE_KVM=1 (as in CI): then they fail, so CI can never pass by skipping the real tests.
``tests/unit`` never opens /dev/kvm: a guard fails any unit test that tries.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUESTS = ROOT / "guests"


def _kvm_problem() -> str | None:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"/dev/kvm is not usable: {e.strerror}"
    os.close(fd)
    return None


_KVM_PROBLEM = _kvm_problem()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kvm") is None:
        return
    if _KVM_PROBLEM is not None:
        if os.environ.get("PYKVMM_REQUIRE_KVM") == "1":
            pytest.fail(f"PYKVMM_REQUIRE_KVM=1 but {_KVM_PROBLEM}")
        pytest.skip(_KVM_PROBLEM)


@pytest.fixture(autouse=True)
def _unit_tests_never_open_kvm(request, monkeypatch):
    """A unit test that opens /dev/kvm is a bug: make it fail loudly."""
    if "tests/unit" not in str(request.node.path).replace(os.sep, "/"):
        return
    real_open = os.open

    def guarded(path, *args, **kwargs):
        if str(path) == "/dev/kvm":
            raise AssertionError("a unit test tried to open /dev/kvm; mark it kvm and move it to tests/kvm")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)
