"""Getting a vCPU out of KVM_RUN on time, every time.

A guest that spins without exiting never returns from KVM_RUN by itself, and on this host a
real-mode ``INT n`` with n >= 0x80 hangs inside KVM_RUN until a signal arrives.  Python runs its
signal handlers only between bytecodes, so a signal that lands just before the ioctl is seen by
the C-level handler, not by any Python code, and the ioctl then enters the guest with nobody left
to stop it.  Two mechanisms close that window:

* ``immediate_exit`` in kvm_run (KVM_CAP_IMMEDIATE_EXIT): KVM_RUN checks it on entry and returns
  EINTR at once.  The kicker sets it *before* sending the signal, so a kick lands whether the vCPU
  is inside KVM_RUN (the signal interrupts it) or about to enter (the flag stops it).
* ``signal.set_wakeup_fd``: the C-level handler of SIGINT/SIGTERM writes to a pipe that this
  thread watches, so Ctrl-C reaches the kicker even when the Python handler is not running yet.

The kicker thread blocks every signal, so process-directed signals go to the vCPU thread.

Under a real-time policy (``chrt -f``, SCHED_FIFO or SCHED_RR, which new threads inherit) a
thread that wakes up never preempts a running thread of the same priority, and a vCPU that
spins in the guest never gives its CPU up: pinned to one CPU (``taskset``), the kicker then
never ran, and a guest in ``jmp $`` under ``--timeout 0.3`` ran on until killed (measured here).
So the kicker raises itself one priority above the thread that started it (see _outrank).
The vCPU thread clears ``immediate_exit`` after each EINTR and then reads the reasons: the kicker
records a reason before it sets the flag, so no reason is lost.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time

from ..errors import KvmError

KICK_SIGNAL = signal.SIGUSR1


def _ignore(signum, frame) -> None:  # a Python-level handler: its only job is to exist
    pass


def install_kick_handler() -> bool:
    """Give KICK_SIGNAL a handler, so that a kick interrupts KVM_RUN instead of killing the process
    (SIGUSR1's default action is to terminate).  Python lets only the main thread set handlers,
    so this runs when the module is imported there (machine.py imports it at load time) and again
    from every Kicker started in the main thread.  True when a handler is in place."""
    if signal.getsignal(KICK_SIGNAL) not in (signal.SIG_DFL, None):
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(KICK_SIGNAL, _ignore)
    return True


install_kick_handler()


class Kicker:
    def __init__(self, vcpu) -> None:
        self.vcpu = vcpu
        self.target_tid = threading.get_native_id()
        self._target_ident = threading.get_ident()
        self._lock = threading.Lock()
        self._deadline: int | None = None  # monotonic ns
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sig_r, self._sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.signals: list[int] = []
        self.kicks = 0
        # Set by every kick, cleared by the vCPU thread when it has handled kicks (_after_kick):
        # code that runs KVM_RUN with immediate_exit for its own purposes checks it afterwards
        # so that a kick landing meanwhile is not swallowed.
        self.pending = False
        self.wake = threading.Event()  # a HLT sleep waits on it
        self._stopping = False
        self._old_wakeup = None
        self._thread = threading.Thread(target=self._loop, name="pykvmm-kicker", daemon=True)

    def start(self) -> None:
        if not install_kick_handler():
            # Raised before anything runs: a kick would otherwise end the whole process.
            raise KvmError(f"cannot run a vCPU in thread {threading.current_thread().name}: "
                           f"{signal.Signals(KICK_SIGNAL).name} has no handler; import "
                           "pykvmm.machine.machine from the main thread first")
        if threading.current_thread() is threading.main_thread():
            self._old_wakeup = signal.set_wakeup_fd(self._sig_w, warn_on_full_buffer=False)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._poke()
        self._thread.join()
        if self._old_wakeup is not None:
            signal.set_wakeup_fd(self._old_wakeup)
            self._old_wakeup = None
        for fd in (self._r, self._w, self._sig_r, self._sig_w):
            os.close(fd)

    def set_deadline(self, when_ns: int | None) -> None:
        """Kick the vCPU at this monotonic time (None: no timed kick)."""
        with self._lock:
            self._deadline = when_ns
        self._poke()

    def kick(self) -> None:
        """Get the vCPU out of KVM_RUN now (callable from any thread)."""
        self.kicks += 1
        self.pending = True
        self.vcpu.immediate_exit = 1
        self.wake.set()
        try:
            signal.pthread_kill(self._target_ident, KICK_SIGNAL)
        except (ProcessLookupError, OSError):
            pass

    def take_signals(self) -> list[int]:
        """Signal numbers the wakeup pipe reported since the last call."""
        with self._lock:
            out, self.signals = self.signals, []
        return out

    def _poke(self) -> None:
        try:
            os.write(self._w, b"x")
        except BlockingIOError:
            pass

    def _outrank(self) -> None:
        """Under SCHED_FIFO/SCHED_RR, run one priority above the vCPU thread (this thread
        inherited its policy and priority).  At the top priority, or where the raise is not
        permitted, it says once on stderr that kicks may come late."""
        prio = 0
        try:
            policy = os.sched_getscheduler(0)  # 0: the calling thread, on Linux
            if policy not in (os.SCHED_FIFO, os.SCHED_RR):
                return
            prio = os.sched_getparam(0).sched_priority
            if prio >= os.sched_get_priority_max(policy):
                why = f"it already runs at the top priority, {prio}: start pykvmm below it"
            else:
                os.sched_setscheduler(0, policy, os.sched_param(prio + 1))
                return
        except PermissionError as e:
            why = f"{e}: run as root, or raise RLIMIT_RTPRIO above {prio}"
        except (OSError, AttributeError) as e:
            why = str(e)
        print(f"pykvmm: warning: under a real-time policy the kicker thread cannot outrank the "
              f"vCPU ({why}); the timeout and device deadlines may come late", file=sys.stderr)

    def _loop(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        self._outrank()
        while not self._stopping:
            with self._lock:
                deadline = self._deadline
            timeout = None
            if deadline is not None:
                timeout = max(0.0, (deadline - time.monotonic_ns()) / 1e9)
            ready, _, _ = select.select([self._r, self._sig_r], [], [], timeout)
            if self._stopping:
                return
            if self._r in ready:
                try:
                    os.read(self._r, 4096)
                except BlockingIOError:
                    pass
            if self._sig_r in ready:
                try:
                    data = os.read(self._sig_r, 4096)
                except BlockingIOError:
                    data = b""
                # Our own kick signal comes back through the wakeup fd too: answering it with
                # another kick would ping-pong forever.
                data = bytes(b for b in data if b != KICK_SIGNAL)
                if data:
                    with self._lock:
                        self.signals.extend(data)
                    self.kick()
            with self._lock:
                deadline = self._deadline
                due = deadline is not None and time.monotonic_ns() >= deadline
                if due:
                    self._deadline = None
            if due:
                self.kick()
