"""What a write did, typed: the phase clock every writer uses (phases add up to the total), the engine record, the report read back."""
import pytest

from gpu_features import synthetic


def test_precompute_phases_add_up_to_the_total(make_store, tmp_path):
    st = make_store(synthetic.generate(6000, 3, seed=2), tmp_path / "s", shard_bars=1000)
    t = st.timings
    phases = [k for k in t if k != "total_s"]
    assert phases == ["read_s", "compute_s", "stats_s", "lock_s", "serialize_s", "hash_s", "write_s", "other_s"]
    assert sum(t[k] for k in phases) == pytest.approx(t["total_s"], rel=1e-9)
    assert all(t[k] >= 0 for k in phases)


class FakeTime:
    """``time.perf_counter`` that returns the values it is given, in order."""

    def __init__(self, *values):
        self.values = list(values)

    def __call__(self):
        return self.values.pop(0)


def test_phase_clock_laps_and_parts_add_up_by_construction(monkeypatch):
    from gpu_features.store import report

    monkeypatch.setattr(report.time, "perf_counter", FakeTime(10.0, 11.0, 13.5, 20.0, 21.0))
    clock = report.PhaseClock()
    clock.lap("read")                                              # 1.0
    clock.lap("compute")                                           # 2.5
    clock.lap_parts({"serialize": 1.5, "hash": 1.0, "write": 3.0})  # 6.5 spent, 5.5 measured inside: other 1.0
    clock.lap("other")                                             # a lap named other adds to it
    assert clock.record() == {"read_s": 1.0, "compute_s": 2.5, "serialize_s": 1.5, "hash_s": 1.0, "write_s": 3.0,
                              "other_s": 2.0, "total_s": 11.0}
    assert clock.record(before={"read": 9.0})["read_s"] == 1.0  # work recorded ahead is not a phase of the clock
    assert list(clock.record(before={"work": 9.0}))[0] == "work_s"


def test_engine_use_round_trips_and_sums():
    from gpu_features.store.report import EngineUse

    a = EngineUse.from_record({"name": "host", "chunks": 3, "fixups": 1, "kernel_seconds": 0.5})
    b = EngineUse("reference", 2, 0, 0.25, note="no compiler")
    assert a.record() == {"name": "host", "chunks": 3, "fixups": 1, "kernel_seconds": 0.5}
    assert b.record()["note"] == "no compiler" and EngineUse.from_record(b.record()) == b
    assert EngineUse.summed([a, b, a]) == EngineUse("host+reference", 8, 2, 1.25)
    assert EngineUse.summed([]).name == "none"


def test_the_report_of_a_build_and_of_an_append(make_store, tmp_path):
    from gpu_features.store import append_store

    bars = synthetic.generate(4000, 2, seed=3)
    st = make_store(bars.take(0, 3000, 0), tmp_path / "s")
    r = st.report
    assert (r.kind, r.new_bars, r.skipped_overlap, r.n_parts, r.cluster) == ("build", 3000, 0, None, None)
    assert r.engine.name == st.engine["name"] and r.total_s == st.timings["total_s"]
    assert list(r.phases) == [k[:-2] for k in st.timings if k != "total_s"]
    assert (r.n_bars, r.n_symbols, r.n_shards, r.bytes_on_disk) == (st.n_bars, 1, len(st.shards), st.bytes_on_disk)
    assert [(s.name, s.bars) for s in r.splits] == [(n, st.splits["counts"][n]["bars"]) for n in ("train", "val", "test")]
    more = bars.take(3000, 4000, 0)
    st = append_store(tmp_path / "s", more)
    r = st.report
    assert (r.kind, r.new_bars, r.skipped_overlap, r.is_append) == ("append", 1000, 0, True)
    assert list(r.phases) == ["read", "compute", "write", "stats"]
    assert sum(r.phases.values()) == pytest.approx(r.total_s, rel=1e-9)
    assert len(r.sources) == 1 and r.n_bars == 4000
