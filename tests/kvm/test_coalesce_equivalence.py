"""The acceptance test of the coalescing engine: coalescing changes exit counts and nothing else.

Every guest whose IO does not depend on time runs under off, fig5, fig6 and fig7 at extents 1, 3,
10 and 50.  Each run must give the same serial output, exit status, io_ops per port (and per MMIO
address) and final registers as the uncoalesced run, which is the oracle: the CPU under KVM.
"""

from __future__ import annotations

import pytest

from .helpers import GUESTS
from .runner import observe

pytestmark = pytest.mark.kvm

# Guests whose IO depends on time or on host input: they have their own tolerance tests.
TIME_OR_INPUT = {"pit_tick", "cmos_clock", "echo", "pic_init"}  # pic_init polls PIT and RTC timing
GUEST_NAMES = sorted(p.stem for p in GUESTS.glob("*.bin") if p.stem not in TIME_OR_INPUT)
POLICIES = ("fig5", "fig6", "fig7", "trace")
EXTENTS = (1, 3, 10, 50, "auto")

_reference: dict[str, dict] = {}


def reference(name: str) -> dict:
    if name not in _reference:
        _reference[name] = observe(GUESTS / f"{name}.bin", "off")
        assert _reference[name]["end"] == "debug-exit", _reference[name]["detail"]
    return _reference[name]


def same_as_off(name: str, got: dict) -> None:
    ref = reference(name)
    assert got["end"] == ref["end"], got["detail"]
    assert got["status"] == ref["status"]
    assert got["serial"] == ref["serial"]
    assert got["serial2"] == ref["serial2"]
    assert got["io_ops"] == ref["io_ops"]
    assert got["mmio_ops"] == ref["mmio_ops"]
    assert got["final_regs"] == ref["final_regs"]


@pytest.mark.parametrize("extent", EXTENTS)
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", GUEST_NAMES)
def test_coalesced_run_equals_uncoalesced(name, policy, extent):
    got = observe(GUESTS / f"{name}.bin", policy, extent)
    same_as_off(name, got)
    # Coalescing never adds IO exits.
    assert got["exits"]["io"] + got["exits"]["mmio"] <= \
        reference(name)["exits"]["io"] + reference(name)["exits"]["mmio"]


@pytest.mark.parametrize("name", ["uart_spin", "mmio_uart"])
def test_literal_and_block_hash_variants_are_equivalent(name):
    same_as_off(name, observe(GUESTS / f"{name}.bin", "fig5", 10, literal=True))
    same_as_off(name, observe(GUESTS / f"{name}.bin", "fig5", 10, hash_mode="block"))
