"""The user's choices (guests, policies, extents, repeats), parsed and checked.

Pure functions: every mistake raises UsageError with one line that shows the bad value and the
accepted ones; the command turns it into exit status 2.
"""

from __future__ import annotations

from pathlib import Path

from ..coalesce import engine as E
from ..errors import UsageError

KVM_RING = "kvm-ring"  # KVM's coalesced IO ring (pykvmm.machine.coalesced_ring)
QEMU = "qemu"  # the QEMU baseline (not a --policies choice: --qemu/--no-qemu)
NO_EXTENT_POLICIES = (E.OFF, KVM_RING)  # policies the extent does not apply to
DEFAULT_EXTENTS = (1, 2, 3, 5, 10, 20, 50)
AUTO = "auto"
# Guests that wait for host input: they never end on their own, so the sweep leaves them out.
INTERACTIVE_GUESTS = frozenset({"echo"})


def engine_policies() -> tuple[str, ...]:
    """The coalescing engine's policies (fig5, fig6, fig7, and trace once the engine has it)."""
    return tuple(p for p in E.POLICIES if p != E.OFF)


def all_policies() -> tuple[str, ...]:
    return (E.OFF, *engine_policies(), KVM_RING)


def auto_extent():
    """The engine's value for ``--extent auto``, or None while the engine has none."""
    return getattr(E, "AUTO_EXTENT", None)


def default_extents() -> tuple:
    return DEFAULT_EXTENTS + ((AUTO,) if auto_extent() is not None else ())


def _split(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise UsageError(f"{what} must be a comma-separated list, not {text!r}")
    seen: list[str] = []
    for t in items:
        if t not in seen:
            seen.append(t)
    return seen


def parse_policies(text: str | None) -> list[str]:
    choices = all_policies()
    if text is None:
        return list(choices)
    names = _split(text, "--policies")
    for n in names:
        if n not in choices:
            raise UsageError(f"unknown policy {n!r}; choose from {', '.join(choices)}")
    return names


def parse_extents(text: str | None) -> list:
    if text is None:
        return list(default_extents())
    out: list = []
    for t in _split(text, "--extents"):
        if t == AUTO:
            if auto_extent() is None:
                raise UsageError("extent auto is not available: this pykvmm's engine has no "
                                 "automatic extent yet")
            out.append(AUTO)
            continue
        try:
            n = int(t)
        except ValueError:
            raise UsageError(f"extent must be a positive integer up to {E.MAX_EXTENT}"
                             f"{' or auto' if auto_extent() is not None else ''}, not {t!r}") from None
        if not 1 <= n <= E.MAX_EXTENT:
            raise UsageError(f"extent must be a positive integer up to {E.MAX_EXTENT}, not {n}")
        out.append(n)
    return out


def parse_repeats(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise UsageError(f"repeats must be a positive integer, not {text!r}") from None
    if not 1 <= n <= 1000:
        raise UsageError(f"repeats must be between 1 and 1000, not {n}")
    return n


def available_guests(guests_dir: Path) -> dict[str, Path]:
    """name -> image for every built guest in guests/ (sorted by name)."""
    return {p.stem: p for p in sorted(guests_dir.glob("*.bin"))}


def parse_guests(text: str | None, guests_dir: Path) -> dict[str, Path]:
    """Guest names from guests/ (``uart_spin``) or paths to flat binaries (``x/y.bin``)."""
    known = available_guests(guests_dir)
    if text is None:
        chosen = {n: p for n, p in known.items() if n not in INTERACTIVE_GUESTS}
        if not chosen:
            raise UsageError(f"no guests found in {guests_dir}; build them with "
                             "scripts/build_guests.py")
        return chosen
    out: dict[str, Path] = {}
    for t in _split(text, "--guests"):
        if t in known:
            out[t] = known[t]
        elif t.endswith(".bin") or "/" in t:
            p = Path(t)
            if not p.is_file():
                raise UsageError(f"guest {t} does not exist")
            out[p.stem] = p
        else:
            raise UsageError(f"unknown guest {t!r}; choose from {', '.join(known) or '(none built)'}"
                             " or give a path to a .bin")
    return out


def configurations(policies: list[str], extents: list) -> list[tuple[str, object]]:
    """(policy, extent) pairs in sweep order; extent None where it does not apply."""
    out: list[tuple[str, object]] = []
    for p in policies:
        if p in NO_EXTENT_POLICIES:
            out.append((p, None))
        else:
            out.extend((p, e) for e in extents)
    return out
