"""SIGINT/SIGTERM that arrive before the run loop has its own handlers.

``python -m pykvmm`` installs ``record`` first thing.  A first signal is only recorded: an
exception raised from a signal handler is lost whenever the handler happens to run inside a
callback whose exceptions Python merely reports ("Exception ignored in ...", e.g. importlib's
module-lock weakref callback while modules load), and the guest would then run on forever.  The
run loop (Machine.run, run_vms) honours a recorded signal as soon as it installs its handlers,
as a stop with the signal's status before the guest runs, and ``entry`` gives that status when
start-up ends any other way.  A second signal leaves at once (SystemExit / KeyboardInterrupt),
so a start-up that hangs can still be interrupted.
"""

from __future__ import annotations

import signal

received: list[int] = []  # signal numbers recorded by ``record`` (at most one)


def record(signum: int, frame) -> None:
    if received:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)
    received.append(signum)
