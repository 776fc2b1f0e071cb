"""The warm-up's ski-rental rule (rental.py), on figures worked out by hand."""

import pytest

from pykvmm.coalesce import rental as R


def test_chain_is_a_geometric_series_after_the_first_follow_on():
    # Every visit followed (8 of 8), and recent exits followed half the time: 1 / (1 - 1/2) = 2.
    assert R.chain(8, 8, 0.5, 64) == pytest.approx(2.0)
    # Half the visits followed, nothing else follows: half an exit per emulation.
    assert R.chain(4, 8, 0.0, 64) == pytest.approx(0.5)


def test_chain_is_capped():
    # Everything always follows (an endless polling loop): the cap, not a division by zero.
    assert R.chain(8, 8, 1.0, 64) == pytest.approx(64)
    assert R.chain(8, 8, 1.0, 5) == pytest.approx(5)


def test_rent_is_the_follow_on_exits_saved_minus_the_overhead():
    # Two follow-on exits of 7 us each against 10 us of overhead.
    assert R.rent_ns(8, 8, 0.5, 64, 7000, 10_000) == pytest.approx(4000)


def test_an_in_then_out_pair_is_never_bought():
    # The OUT follows the IN (one follow-on, 7 us) and nothing follows the OUT: 25 us of overhead
    # per emulation is never paid back, however often the site traps.
    assert not R.should_buy(followed=1000, seen=1000, recent=0.0, cap=64, exit_ns=7000,
                            overhead_ns=25_000, buy_ns=1, exits=10**9)


def test_buys_once_the_rent_paid_reaches_the_price():
    # 4 us of rent per exit (above) against a 100 us price: 24 exits pay 96 us, 25 pay 100 us.
    args = dict(followed=8, seen=8, recent=0.5, cap=64, exit_ns=7000, overhead_ns=10_000,
                buy_ns=100_000)
    assert not R.should_buy(exits=24, **args)
    assert R.should_buy(exits=25, **args)


def test_no_verdict_before_the_minimum_of_observations():
    n = R.MIN_OBSERVED - 1
    assert not R.should_buy(followed=n, seen=n, recent=1.0, cap=64, exit_ns=7000, overhead_ns=0,
                            buy_ns=0, exits=10**6)


def test_gap_is_two_round_trips_plus_the_extent_run_natively():
    assert R.gap_ns(7000, 800, 10) == 2 * 7000 + 10 * 800
