"""Differential fuzzing (issue 8, section 1): generated guest programs give the same serial bytes,
ending, exit status, IO log and final registers under every coalescing mode as uncoalesced.

The budget is fixed: PROGRAMS programs, each run under ``off`` and then under every mode in
``fuzz.modes()`` (the engine's POLICIES without off, plus KVM's coalesced ring), at an extent
hypothesis picks.  Runs that time out or touch a time-dependent device are counted, not compared.
``scripts/fuzz.py`` runs the same generator for as long as asked and saves failing programs under
tests/kvm/fuzz_regressions/, which test_fuzz_regressions.py replays.
"""

from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import fuzz as F

pytestmark = pytest.mark.kvm

PROGRAMS = 200
VERDICTS: collections.Counter = collections.Counter()


@settings(max_examples=PROGRAMS, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(r=st.randoms(use_true_random=False), extent=st.sampled_from([1, 3, 10, 50]),
       kind=st.sampled_from(["well-formed", "well-formed", "random-bytes"]),
       hash_mode=st.sampled_from(["block+address", "block"]), literal=st.booleans(),
       table_size=st.sampled_from([4096, 2]))
def test_every_mode_matches_off(r, extent, kind, hash_mode, literal, table_size):
    code = F.well_formed(r) if kind == "well-formed" else F.random_bytes(r)
    v = F.differential(code, timeout=2.0, extent=extent, hash_mode=hash_mode, literal=literal,
                       table_size=table_size)
    VERDICTS[v.kind] += 1
    assert v.kind not in ("divergence", "hang"), f"{v.detail}\nprogram ({kind}): {code.hex()}"


def test_report_verdicts():
    """Runs after the fuzz test (same module, file order): most programs must be compared."""
    if not VERDICTS:
        pytest.skip("the fuzz test did not run")
    print(f"\nfuzzed {sum(VERDICTS.values())} programs x {1 + len(F.modes())} modes: {dict(VERDICTS)}")
    assert VERDICTS["same"] >= 0.8 * sum(VERDICTS.values()), dict(VERDICTS)


def test_generator_reaches_the_engine():
    """The generated programs exercise coalescing: blocks are emulated, with IO inside them,
    including self-modified code (stops 'smc') and string IO with iterations left."""
    import random

    from pykvmm.coalesce import engine as E
    from pykvmm.machine.machine import Machine, MachineConfig

    blocks = ios = 0
    stops: collections.Counter = collections.Counter()
    for seed in range(30):
        code = F.well_formed(random.Random(seed))
        with Machine(MachineConfig(serial="null", serial_input=False)) as m:
            m.load_guest(code)
            m.engine = E.CoalescingEngine(m, E.FIG5)
            m.run(timeout=2)
            co = m.engine.stats()
        blocks += co["blocks_emulated"]
        ios += co["io_emulated"]
        stops.update(co["stops"])
    assert blocks > 100 and ios > 100, (blocks, ios)
    assert stops["smc"] > 0 and stops["rep-pending"] > 0, stops
