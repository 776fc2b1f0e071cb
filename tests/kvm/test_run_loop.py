"""The run loop's own behaviour (machine.py) beyond exit dispatch."""

import gc

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
