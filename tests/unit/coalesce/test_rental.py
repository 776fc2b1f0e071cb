"""The warm-up's ski-rental rule (rental.py), on figures worked out by hand."""

import pytest

from pykvmm.coalesce import rental as R


def _entry(followed: int, seen: int, follower: int = -1) -> list:
    d = [0] * 9
    d[R.FOLLOWED], d[R.SEEN], d[R.FOLLOWER] = followed, seen, follower
    return d


def test_chain_is_a_geometric_series_after_the_first_follow_on():
    # Every visit followed (8 of 8), and recent exits followed half the time: 1 / (1 - 1/2) = 2.
    assert R.chain(8, 8, 0.5, 64) == pytest.approx(2.0)
    # Half the visits followed, nothing else follows: half an exit per emulation.
    assert R.chain(4, 8, 0.0, 64) == pytest.approx(0.5)


def test_chain_is_capped():
    # Everything always follows (an endless polling loop): the cap, not a division by zero.
    assert R.chain(8, 8, 1.0, 64) == pytest.approx(64)
    assert R.chain(8, 8, 1.0, 5) == pytest.approx(5)


def _buy(followed: int, seen: int, recent: float, **kw) -> bool:
    # A site whose follower is not known yet: its chain is the geometric forecast (chain).
    return R.should_buy(0, _entry(followed, seen), {}.get, recent, reach=None, **kw)


def test_rent_is_the_follow_on_exits_saved_minus_the_overhead():
    # Two follow-on exits of 7 us each against 10 us of overhead.
    assert R.rent_along(0, _entry(8, 8), {}.get, 0.5, 64, None, 7000, 10_000) == pytest.approx(
        4000)


def test_an_in_then_out_pair_is_never_bought():
    # The OUT follows the IN (one follow-on, 7 us) and nothing follows the OUT: 25 us of overhead
    # per emulation is never paid back, however often the site traps.
    assert not _buy(followed=1000, seen=1000, recent=0.0, cap=64, exit_ns=7000,
                    overhead_ns=25_000, buy_ns=1, exits=10**9)


def test_buys_once_the_rent_paid_reaches_the_price():
    # 4 us of rent per exit (above) against a 100 us price: 24 exits pay 96 us, 25 pay 100 us.
    args = dict(followed=8, seen=8, recent=0.5, cap=64, exit_ns=7000, overhead_ns=10_000,
                buy_ns=100_000)
    assert not _buy(exits=24, **args)
    assert _buy(exits=25, **args)


def test_no_verdict_before_the_minimum_of_observations():
    n = R.MIN_OBSERVED - 1
    assert not _buy(followed=n, seen=n, recent=1.0, cap=64, exit_ns=7000, overhead_ns=0,
                    buy_ns=0, exits=10**6)


def test_gap_is_two_round_trips_plus_the_extent_run_natively():
    assert R.gap_ns(7000, 800, 10) == 2 * 7000 + 10 * 800


def _follow_ons(site, sites, recent, cap, reach):
    return R.chain_along(site, sites[site], sites.get, recent, cap, reach)[0]


def test_the_chain_walks_along_the_sites_seen_to_follow():
    # Figure 8's body: IO at 3, 5, 8 and 11 (sites 0x30, 0x35, 0x3C, 0x44 here); each of the
    # first three is always followed by the next, the fourth never (the loop's next pass is no
    # follow-on).  From 3 an emulation absorbs three exits, from 5 two, from 8 one, whatever
    # the rate over all exits (3 of 4 here).
    sites = {0x30: _entry(9, 9, 0x35), 0x35: _entry(9, 9, 0x3C), 0x3C: _entry(9, 9, 0x44),
             0x44: _entry(0, 9)}
    for site, want in ((0x30, 3.0), (0x35, 2.0), (0x3C, 1.0), (0x44, 0.0)):
        assert R.chain_along(site, sites[site], sites.get, 0.75, 5, 30) == (want, 0.0)
    # The old forecast from 3: 1 / (1 - 3/4) = 4, more than the block holds; with a rate of a
    # half it was 2, too few to pay an overhead of two exits.
    assert R.chain(9, 9, 0.5, 5) == pytest.approx(2.0)
    # Rent from 3 with an exit of 7 us and an overhead of 5: three exits saved, one overhead.
    assert R.rent_along(0x30, sites[0x30], sites.get, 0.5, 5, 30, 7000, 5000) == pytest.approx(
        3 * 7000 - 5000)


def test_the_walk_multiplies_the_follow_on_rates():
    # Followed half the time, then its follower always: 0.5 * (1 + 1) = 1.
    sites = {1: _entry(4, 8, 2), 2: _entry(8, 8, 3), 3: _entry(0, 8)}
    assert _follow_ons(1, sites, 0.0, 64, None) == pytest.approx(1.0)


def test_the_figures_walk_stops_at_the_scan_window():
    # The follower of the follower lies 40 bytes from the trap: beyond a 30-byte window.
    sites = {0: _entry(8, 8, 20), 20: _entry(8, 8, 40), 40: _entry(8, 8)}
    assert _follow_ons(0, sites, 0.0, 64, 30) == pytest.approx(2.0)
    # trace's window slides: the walk goes on (and, with nothing known after 40, stops there
    # at the recent rate, 0).
    assert _follow_ons(0, sites, 0.0, 64, None) == pytest.approx(3.0)


def test_a_loop_rents_one_pass_an_exit():
    # A polling loop of two exits: each site always follows the other.  Each native exit at
    # site 1 forgoes its pass's exits (site 2's, and its own next one, which an emulation of the
    # loop would have absorbed), and no overhead: only the loop's first exit starts an
    # emulation.  Counting the passes still to come as well would count every exit of the loop
    # once per pass left (the forecast before this one took 15 follow-ons an exit and bought
    # pic_sequence's print loop as its last character went out).
    sites = {1: _entry(8, 8, 2), 2: _entry(8, 8, 1)}
    assert R.chain_along(1, sites[1], sites.get, 1.0, 64, None) == (1.0, 1.0)
    assert R.rent_along(1, sites[1], sites.get, 1.0, 64, None, 7000, 15000) == pytest.approx(
        2 * 7000)
    # Left half the time after site 2: it comes back half the time, and pays half an overhead.
    sites[2] = _entry(4, 8, 1)
    assert R.chain_along(1, sites[1], sites.get, 0.0, 64, None) == (1.0, 0.5)
    assert R.rent_along(1, sites[1], sites.get, 0.0, 64, None, 7000, 15000) == pytest.approx(
        1.5 * 7000 - 0.5 * 15000)


def test_a_cycle_that_avoids_the_site_is_bounded():
    # Site 1 leads into a loop of 2 and 3 that never comes back to it: the walk stops after
    # CHAIN_WALK sites, and the recent rate continues it up to the cap.
    sites = {1: _entry(8, 8, 2), 2: _entry(8, 8, 3), 3: _entry(8, 8, 2)}
    assert _follow_ons(1, sites, 1.0, 64, None) == pytest.approx(64)
    assert _follow_ons(1, sites, 0.0, 64, None) == pytest.approx(R.CHAIN_WALK)
    assert _follow_ons(1, sites, 0.0, 5, None) == pytest.approx(5)


def test_without_a_known_follower_the_chain_is_the_old_forecast():
    d = _entry(6, 8)
    for recent in (0.0, 0.3, 0.9):
        follow_ons, back = R.chain_along(7, d, {}.get, recent, 64, 30)
        assert follow_ons == pytest.approx(R.chain(6, 8, recent, 64)) and back == 0.0
