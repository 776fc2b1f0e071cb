import signal
import sys


def _terminated(signum, frame):
    raise SystemExit(143)


def entry() -> None:
    """``python -m pykvmm`` and the installed ``pykvmm`` command.

    Ctrl-C or SIGTERM before the run loop installs its own handlers (while modules load, KVM
    opens, the VM is built) ends with the same status as during the run (130/143) and without a
    traceback; nothing the guest wrote can be lost yet, since the guest has not run.
    """
    signal.signal(signal.SIGTERM, _terminated)
    try:
        from .cli import main

        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    entry()
