import signal
import sys


def entry() -> None:
    """``python -m pykvmm`` and the installed ``pykvmm`` command.

    Ctrl-C or SIGTERM before the run loop installs its own handlers (while modules load, KVM
    opens, the VM is built) ends with the same status as during the run (130/143) and without a
    traceback; nothing the guest wrote can be lost yet, since the guest has not run.  The first
    such signal is recorded and honoured when the run starts (see early_stop); a second one
    leaves at once.
    """
    from . import early_stop

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, early_stop.record)
    try:
        from .cli import main

        status = main()
    except KeyboardInterrupt:
        status = 130
    if early_stop.received:
        # a signal the run did not see (start-up ended first) or that came after it
        status = 128 + early_stop.received[0]
    sys.exit(status)


if __name__ == "__main__":
    entry()
