"""early_stop.record: the first SIGINT/SIGTERM during start-up is recorded, a second leaves."""

import signal

import pytest

from pykvmm import early_stop


@pytest.fixture(autouse=True)
def clean():
    early_stop.received.clear()
    yield
    early_stop.received.clear()


def test_a_first_signal_is_only_recorded():
    early_stop.record(signal.SIGTERM, None)  # no exception: it could be lost in a callback
    assert early_stop.received == [signal.SIGTERM]


def test_a_second_sigterm_leaves_with_its_status():
    early_stop.record(signal.SIGTERM, None)
    with pytest.raises(SystemExit) as e:
        early_stop.record(signal.SIGTERM, None)
    assert e.value.code == 143
    assert early_stop.received == [signal.SIGTERM]


def test_a_second_sigint_is_a_keyboard_interrupt():
    early_stop.record(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt):
        early_stop.record(signal.SIGINT, None)
