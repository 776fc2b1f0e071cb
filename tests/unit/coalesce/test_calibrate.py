"""The extent chosen from calibration figures: the break-even distance between two IOs."""

from pykvmm.coalesce.calibrate import MAX_EXTENT, MIN_EXTENT, choose_extent


def test_extent_is_exit_cost_over_extra_emulation_cost():
    # 8 us per exit, emulation 500 ns dearer than native per instruction: 16 instructions.
    assert choose_extent({"exit_us": 8.0, "native_ns_per_insn": 400, "emulated_ns_per_insn": 900}) == 16


def test_cheaper_emulation_than_native_takes_the_largest_extent():
    assert choose_extent({"exit_us": 5.0, "native_ns_per_insn": 600, "emulated_ns_per_insn": 100}) == MAX_EXTENT


def test_very_dear_emulation_still_keeps_one_instruction():
    assert choose_extent({"exit_us": 1.0, "native_ns_per_insn": 1, "emulated_ns_per_insn": 100000}) == MIN_EXTENT


# -- the cache ------------------------------------------------------------------------------------

import json  # noqa: E402

from pykvmm.coalesce import calibrate as C  # noqa: E402

FIGURES = {"exit_us": 7.0, "native_ns_per_insn": 800.0, "emulated_ns_per_insn": 200.0,
           "compile_us": 850.0}


def _fake_measure(calls):
    def measure(kvm):
        calls.append(kvm)
        return dict(FIGURES)
    return measure


def test_cache_written_before_compile_cost_existed_is_measured_again(tmp_path, monkeypatch):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"exit_us": 5.4, "native_ns_per_insn": 621.1,
                                "emulated_ns_per_insn": 112.2, "extent": 1000, "took_ms": 81.1}))
    calls = []
    monkeypatch.setattr(C, "_cache_path", lambda: path)
    monkeypatch.setattr(C, "_measure", _fake_measure(calls))
    data = C.calibrate(None)
    assert calls == [None] and data["cached"] is False
    assert data["compile_us"] == 850.0
    assert json.loads(path.read_text())["compile_us"] == 850.0  # and the file is brought up to date


def test_complete_cache_is_used_without_measuring(tmp_path, monkeypatch):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({**FIGURES, "extent": 1000}))
    calls = []
    monkeypatch.setattr(C, "_cache_path", lambda: path)
    monkeypatch.setattr(C, "_measure", _fake_measure(calls))
    data = C.calibrate(None)
    assert calls == [] and data["cached"] is True and data["compile_us"] == 850.0
