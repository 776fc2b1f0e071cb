"""Warm-up (beyond the patent): when is a site worth emulating at all?

Emulating a site for the first time buys its code: the scanning unit decodes it (capstone) and the
emulator generates Python source for its blocks and compiles it, about 0.5-1 ms per block on the
development host, the price of a hundred exits (an exit round trip costs about 7 us there).  Every
later emulation at the site also costs a fixed 25-45 us (registers in and out, the table, the
emulator's set-up), and one more KVM_RUN when the trapping access must be completed first.  So a
site pays only if it keeps trapping *and* each of its emulations absorbs several following exits.
Short guests, one-off initialisation code and IN-then-OUT pairs lose, and used to lose heavily.

This is the ski-rental problem: renting is leaving an exit to native execution, buying is
compiling.  The deterministic rule (rent until the rent paid equals the price, then buy) never
costs more than twice the better choice made in hindsight.  Here the rent of one native exit at
a site is what emulating it would have saved: the chain of exits that follow it closely enough
to be absorbed, each worth an exit round trip, minus the per-emulation overhead.  While a site
warms up, each of its native exits is watched (a clock read): the next exit is a follow-on when
an emulation could have reached it (a little further on in the code, or soon after in time).
The chain is forecast along the follow-ons seen: the site's own follow-on rate, then that of
the site that followed it, and so on (see chain_along); where nothing more is known, at the
recent rate over all exits (see chain).  A site is bought once ``exits seen x rent`` reaches the price (the
calibrated cost of compiling a block, calibrate.py); one whose rent is not positive, or too
small to pay within MAX_WATCH exits, rests for its demotion penalty and is watched again later.
The overhead starts from a prior and follows what the engine measures on warm emulations.

The forecast is coarse: on this host an exit costs as much as about nine natively run
instructions, so time alone barely separates "the next IO is within the extent" from "it is
not", and code addresses miss calls and returns.  After a site is bought, every emulation is
timed against the exits it saved, and one that keeps losing is demoted (engine._score).

Everything here only ever decides to leave an exit to native execution, which is correct
whatever the guest does; a wrong forecast costs time, never correctness.
"""

from __future__ import annotations

import math

# Visits of a site observed before its forecast is used.
MIN_OBSERVED = 2
# A site whose forecast rent would take more than this many exits to pay its price rests instead
# of being watched (watching an exit costs a clock read and some bookkeeping, 1-3 us here).
MAX_WATCH = 64
# Weight of the last exit in the recent follow-on rate over all sites (the code a guest runs now
# says more than its initialisation did).
RECENT_WEIGHT = 1 / 16
# An emulation under trace is credited at most this many follow-on exits (it is bounded by a
# budget anyway).
CHAIN_CAP = 64
# Two exits are close when the second comes within this many exit round trips (the exit itself
# and the device work around it, measured: 1.1-1.8 round trips here) plus the extent's
# instructions run natively.
GAP_EXITS = 2
# A typical real-mode instruction's length in bytes (most are 1-4): an exit whose site lies
# within the extent times this of the previous one is within the extent's reach in the code.
INSN_BYTES = 3
# Until this engine has measured a warm emulation, its overhead is taken as this many exit round
# trips.  Measured on the development host (stats overhead_us, uart_spin with --warmup auto):
# 5.7 us under fig5 and 14.5 us under trace (which completes an IN first), against 7.7 us an exit.
# (It was 5, from 25-45 us measured before the emulator and engine got faster: with it, fig5's
# two or three follow-on exits a byte never paid, and uart_spin took as many exits as off.)
OVERHEAD_PRIOR_EXITS = 2
# Weight of a new measurement in the running estimate of the per-emulation overhead.
OVERHEAD_WEIGHT = 1 / 8


def dormant_exits(buy_ns: float, exit_ns: int) -> int:
    """How many of a run's first exits the engine leaves native without watching them: as many
    as cost, natively, the price of buying one site (about 130 here).

    Watching is not free (1-2 us an exit here, against 20-25 us an exit in a short guest), and
    a run that ends within this many exits could not have paid back even one purchase: the
    ski-rental rule again, applied to the engine as a whole.  A longer run loses at most those
    exits' savings once, the price of one purchase (about 1 ms).  Short guests (the PIT and PIC
    programming, a firmware's start-up: 100-170 exits) run as with off."""
    if exit_ns <= 0:
        return 0
    return math.ceil(buy_ns / exit_ns)


def gap_ns(exit_ns: int, native_ns: int, extent: int) -> int:
    """The largest time between two exits that still counts as one chain: what an exit and the
    extent's worth of natively run instructions between two IOs take."""
    return GAP_EXITS * exit_ns + extent * native_ns


def chain(followed: int, seen: int, recent: float, cap: int) -> float:
    """Forecast follow-on exits an emulation from a site would absorb: the chance that the site's
    exit has a follow-on (``followed`` of ``seen`` visits), times the length of the chain that
    then continues at the recent rate of follow-ons over all exits (a geometric series), at most
    ``cap``."""
    if not seen:
        return 0.0
    stay = min(recent, 1 - 1 / cap)
    return min(cap, followed / seen / (1 - stay))


# The fields of a site's forecast entry that chain_along reads (the engine's demotion entries).
FOLLOWED, SEEN, FOLLOWER = 5, 6, 8
# Follow-on sites walked at most per forecast (each a dict lookup, on a watched exit); beyond,
# the recent rate continues the chain.
CHAIN_WALK = 8


def chain_along(site: int, entry: list, get, recent: float, cap: int,
                reach: int | None) -> tuple[float, float]:
    """Forecast what an emulation from ``site`` would absorb, along the chain of sites seen to
    follow one another.  Returns ``(follow_ons, back)``: the follow-on exits expected before the
    chain comes back to ``site``, and the chance that it does come back (the site's next exit
    is then inside the chain).

    The walk: ``entry``'s follow-on rate, times one plus the chain from the site that followed
    it (its ``FOLLOWER``, looked up with ``get``), and so on, at most ``cap`` exits and
    CHAIN_WALK sites; where the next site is unknown, the recent rate over all exits continues
    it (as chain does).  It stops where the chain returns to ``site``: what lies beyond is
    the rent of the site's next exit, and counting it here too would count every exit of a
    loop once per pass still to come (a 20-byte polling loop forecast 15 follow-ons an exit,
    where each exit forgoes one).  ``reach``: the Figures' scan covers a fixed window from the
    trap, so the walk stops at a follower further than ``reach`` bytes from ``site`` (None
    under trace, whose window slides).

    Why walk: Figure 8's loop body traps at positions 3, 5, 8 and 11, and a block from 3
    absorbs the other three, but 11's next exit (3 again, a loop later) is no follow-on, so the
    rate over all exits is about a half and chain forecast 1.85 follow-ons from 3, less than
    the emulation's overhead: fig5 never bought the patent's own example (4,156 exits against
    1,068 with warm-up 0, and 45 ms against 29)."""
    stay = min(recent, 1 - 1 / cap)
    total = 0.0
    p = 1.0
    d = entry
    for _ in range(CHAIN_WALK):
        seen = d[SEEN]
        if not seen:
            break
        p *= d[FOLLOWED] / seen
        if p <= 0.0:
            return total, 0.0
        nxt = d[FOLLOWER]
        if nxt == site:
            return total, p  # back at the site: the rest is its next exit's rent
        total += p
        if total >= cap:
            return float(cap), 0.0
        if nxt >= 0 and reach is not None and not 0 < nxt - site <= reach:
            return total, 0.0  # beyond the window an emulation from ``site`` scans
        e = get(nxt) if nxt >= 0 else None
        if e is None or not e[SEEN]:
            break
        d = e
    return min(cap, total + p * stay / (1 - stay)), 0.0


def rent_along(site: int, entry: list, get, recent: float, cap: int, reach: int | None,
               exit_ns: float, overhead_ns: float) -> float:
    """What one native exit at ``site`` forgoes, with the chain walked (chain_along): each
    follow-on exit an emulation from it would absorb, and the site's own next exit when the
    chain comes back to it, is an exit round trip; the emulation's overhead is paid only by
    an exit that starts a chain, not by one that an earlier emulation of the loop would have
    absorbed.  A polling loop's exit thus forgoes its pass's exits, whatever the number of
    passes to come (each pays its own)."""
    follow_ons, back = chain_along(site, entry, get, recent, cap, reach)
    return (follow_ons + back) * exit_ns - overhead_ns * (1.0 - back)


def should_buy(site: int, entry: list, get, recent: float, cap: int, reach: int | None,
               exit_ns: float, overhead_ns: float, buy_ns: float, exits: int) -> bool:
    """The ski-rental rule with a forecast: buy (compile and emulate) once the rent paid at this
    site, ``exits`` times the forgone saving (rent_along), reaches the price of buying; no
    verdict before MIN_OBSERVED visits.  (The engine's _watch applies it inline, as it needs
    the rent again to decide whether the site rests.)"""
    if entry[SEEN] < MIN_OBSERVED:
        return False
    rent = rent_along(site, entry, get, recent, cap, reach, exit_ns, overhead_ns)
    return rent > 0 and exits * rent >= buy_ns
