from pykvmm.coalesce.interpreter import MMIO_READ, MMIO_WRITE, PIO_IN, PIO_OUT, InstructionInterpreter
from pykvmm.kvm import exits as X


def test_io_exits_are_classified_by_kind():
    c = InstructionInterpreter.classify
    assert c(X.IoOut(0x3F8, 1, 1, b"a")) == PIO_OUT
    assert c(X.IoIn(0x3FD, 1, 1, 4096)) == PIO_IN
    assert c(X.MmioWrite(0xB0000, 1, b"a")) == MMIO_WRITE
    assert c(X.MmioRead(0xB0005, 1)) == MMIO_READ


def test_other_exits_are_not_io():
    for ex in (X.HLT, X.SHUTDOWN, X.INTERRUPTED, X.InternalError(1, (), b""), X.Unsupported(99, "x")):
        assert InstructionInterpreter.classify(ex) is None
