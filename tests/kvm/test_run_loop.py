"""The run loop's own behaviour (machine.py) beyond exit dispatch."""

import gc
import time

import pytest

from pykvmm.machine.machine import Machine, MachineConfig

from .helpers import assemble

pytestmark = pytest.mark.kvm


def test_objects_made_before_a_run_are_frozen_out_of_the_gc_during_it():
    # machine.py: a full collection of the caches alive before a run cost 10-20 ms inside
    # runs of 4 ms, so they are frozen for the run and unfrozen after it.
    seen = []
    before = gc.get_freeze_count()
    with Machine(MachineConfig(serial="null", serial_input=False)) as m:
        m.load_guest(assemble("mov al, 1\nout 0x80, al\nxor al, al\nout 0xf4, al"))
        post = m.pio._writers[0x80]
        m.pio.route(0x80, write=lambda off, v: (seen.append(gc.get_freeze_count()), post[0](off, v)))
        r = m.run(timeout=30)
        assert r.end == "debug-exit", r.detail
    assert before == 0 and seen and seen[0] > 1000
    assert gc.get_freeze_count() == 0


class _SlowEngine:
    """An engine that only spends a known time on each call (a busy wait on the host's clock)."""
    dormant = 0

    def __init__(self, wait_ns: int):
        self.wait_ns, self.calls = wait_ns, 0

    def after_pio(self, is_out: int, port: int) -> int:
        self.calls += 1
        end = time.perf_counter_ns() + self.wait_ns
        while time.perf_counter_ns() < end:
            pass
        return 0

    after_exit = after_pio

    def stats(self) -> dict:
        return {"policy": "slow"}


def test_the_time_spent_inside_the_engine_is_accounted_by_the_host_clock():
    # stats coalesce.engine_us / engine_calls: the oracle is the engine's own busy wait.
    guest = assemble("mov cx, 20\nagain: mov al, 1\nout 0x80, al\nloop again\n"
                     "xor al, al\nout 0xf4, al")
    with Machine(MachineConfig(serial="null", serial_input=False)) as m:
        m.load_guest(guest)
        eng = m.engine = _SlowEngine(200_000)
        r = m.run(timeout=30)
        assert r.end == "debug-exit", r.detail
        st = m.stats(r)
    co = st["coalesce"]
    # every port-IO exit but the debug exit's own (which stops the run) reached the engine
    assert co["engine_calls"] == eng.calls == st["exits"]["io"] - 1 >= 20
    assert 200 * eng.calls <= co["engine_us"] <= st["wall_s"] * 1e6
