"""The exception hierarchy: one root, a few children, wrapped once at the CLI boundary."""


class PykvmmError(Exception):
    """Root of every error pykvmm raises on purpose."""


class UsageError(PykvmmError):
    """A user's mistake (bad option, bad file). The CLI prints it on one line and exits 2."""


class KvmUnavailableError(UsageError):
    """/dev/kvm is missing, not accessible or busy."""


class KvmError(PykvmmError):
    """An ioctl failed. The message names the ioctl."""


class GuestMemoryError(PykvmmError):
    """A guest-controlled address or length fell outside what is backed."""


class GuestFault(PykvmmError):
    """The guest did something that ends the run with a fault report (status 3)."""
