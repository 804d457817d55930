"""open_store and the Store reader: round trip, typed accessors, splits and windows, and every refusal of a damaged store."""
import json

import numpy as np
import pytest

import gpu_features as gf
from gpu_features import engines
from gpu_features import state as S
from gpu_features.errors import StoreError
from gpu_features.window_index import usable_starts
from tests.store.conftest import N


def test_round_trip_equals_the_engine(bars, built):
    st = gf.open_store(built, checksums=True)
    run = engines.run(bars.open, bars.high, bars.low, bars.close, offsets=bars.offsets, engine="reference")
    np.testing.assert_array_equal(st.array("features").view(np.uint32), run.features.view(np.uint32))
    np.testing.assert_array_equal(st.array("valid"), run.valid)
    np.testing.assert_array_equal(st.timestamps(), bars.timestamp)
    m = st.manifest
    assert m["n_bars"] == 2 * N and m["symbols"] == ["SYN0", "SYN1"]
    assert [(s["first"], s["count"]) for s in m["series"]] == [(0, N), (N, N)]
    assert [(s["first"], s["count"]) for s in m["shards"]] == [(0, 7000), (7000, 7000), (14000, 7000),
                                                               (21000, 7000), (28000, 2000)]
    assert m["shards"][0]["file"] == "bars-00000.safetensors"
    assert m["config"] == gf.FeatureConfig().to_dict() and m["engine"]["name"] == "host"
    assert m["sources"][0]["kind"] == "synthetic" and m["sources"][0]["seed"] == 11
    assert m["stats"]["valid_bars"] == int(run.valid.sum())
    assert m["stats"]["swings"]["highs"] == int((run.swing == 1).sum())
    assert set(m["stats"]["per_symbol"]) == {"SYN0", "SYN1"}
    for key in ("read_s", "compute_s", "write_s", "total_s"):
        assert m["timings"][key] >= 0


def test_torch_views(built):
    st = gf.open_store(built)
    f = st.features()
    assert f.shape == (2 * N, 10) and str(f.dtype) == "torch.float32"
    assert f.data_ptr() == st.array("features").ctypes.data  # zero-copy on the CPU
    assert st.valid().dtype.is_floating_point is False and int(st.valid().sum()) == st.manifest["stats"]["valid_bars"]


def test_checkpoints_hold_the_exact_state(bars, built):
    st = gf.open_store(built)
    states = st.states()
    cps = states["checkpoint_bar"]
    assert {0, 7000, 14000, 15000, 21000, 28000} <= set(cps.tolist())  # shard and series starts
    assert {1000, 16000, 29000} <= set(cps.tolist())  # every 1000 bars of a series
    for p in (7000, 16000):
        a = 0 if p < N else N
        prefix = engines.run(bars.open[a:p], bars.high[a:p], bars.low[a:p], bars.close[a:p], engine="reference")
        k = int(np.searchsorted(cps, p))
        np.testing.assert_array_equal(states["checkpoint_state"][k].view(np.uint64), prefix.end_states[0].view(np.uint64))
    end = engines.run(bars.open[N:], bars.high[N:], bars.low[N:], bars.close[N:], engine="reference").end_states[0]
    np.testing.assert_array_equal(states["end_state"][1], end)
    assert states["end_state"].shape == (2, S.state_dim(10))


def test_splits_are_chronological_and_windows_never_straddle(built):
    st = gf.open_store(built)
    ids = st.split_ids()
    ts = st.timestamps()
    for k in range(2):  # every bar of split k comes before every bar of split k + 1
        assert ts[ids == k].max() < ts[ids == k + 1].min()
    K = st.config.window_length
    valid = st.array("valid")
    starts = st.usable_window_starts()
    for s in starts[:: max(len(starts) // 500, 1)]:
        assert valid[s:s + K].all() and len(set(ids[s:s + K])) == 1
        assert (s < N) == (s + K - 1 < N)  # one series
    counts = st.manifest["splits"]["counts"]
    assert sum(c["windows"] for c in counts.values()) == len(starts)
    assert counts["train"]["bars"] + counts["val"]["bars"] + counts["test"]["bars"] == 2 * N
    assert len(st.usable_window_starts("val")) == counts["val"]["windows"]


def test_usable_starts_against_brute_force():
    rng = np.random.default_rng(0)
    n, K = 300, 7
    valid = rng.random(n) > 0.05
    split = np.repeat([0, 1, 2], [200, 50, 50]).astype(np.int8)
    bounds = np.array([0, 120, 130, n])
    seg = np.searchsorted(bounds, np.arange(n), side="right") - 1
    got = usable_starts(valid, split, bounds, K)
    want = np.zeros(n, bool)
    for s in range(n - K + 1):
        w = slice(s, s + K)
        want[s] = valid[w].all() and len(set(split[w])) == 1 and len(set(seg[w])) == 1
    np.testing.assert_array_equal(got, want)
    half = usable_starts(valid, split, bounds, K, min_valid_fraction=0.5)
    assert half.sum() > got.sum()


def test_split_dates(make_store, bars, tmp_path):
    st = make_store(bars, tmp_path / "d", splits={"dates": ["2019-01-15", "2019-01-17T12:00"]})
    ts, ids = st.timestamps(), st.split_ids()
    cut1 = np.datetime64("2019-01-15", "ns").astype(np.int64)
    assert (ids[ts < cut1] == 0).all() and (ids[ts >= cut1] > 0).all()
    assert st.manifest["splits"]["method"] == "dates"


# --- refusals -------------------------------------------------------------------------------


def shard0(path):
    return path / json.loads((path / "manifest.json").read_text())["shards"][0]["file"]


def edit_manifest(path, fn):
    m = json.loads((path / "manifest.json").read_text())
    fn(m)
    (path / "manifest.json").write_text(json.dumps(m))


def refused(path, *fragments, checksums=True):
    with pytest.raises(StoreError) as err:
        gf.open_store(path, checksums=checksums)
    for f in fragments:
        assert f in str(err.value), f"{f!r} not in {err.value}"


def test_truncated_shard(store_copy):
    p = shard0(store_copy)
    p.write_bytes(p.read_bytes()[:-100])
    refused(store_copy, "shard bars-00000.safetensors has", "bytes but the manifest says", "truncated")


def test_flipped_byte(store_copy):
    p = shard0(store_copy)
    data = bytearray(p.read_bytes())
    data[-5000] ^= 0x01
    p.write_bytes(bytes(data))
    gf.open_store(store_copy, checksums=False)  # the opt-out: sizes and header still fine
    refused(store_copy, "shard bars-00000.safetensors fails its SHA-256 checksum")  # the default hashes


def test_missing_shard(store_copy):
    shard0(store_copy).unlink()
    refused(store_copy, "shard bars-00000.safetensors is missing")


def test_unknown_version(store_copy):
    edit_manifest(store_copy, lambda m: m.update(version=2))
    refused(store_copy, "store version 2 is unknown; this gpu-features reads version 1")


def test_not_a_store(tmp_path):
    refused(tmp_path / "nothing", "no such store directory")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "no manifest.json")


def test_manifest_not_json(store_copy):
    (store_copy / "manifest.json").write_text("{oops")
    refused(store_copy, "manifest.json: not valid JSON")


def test_manifest_wrong_format(store_copy):
    edit_manifest(store_copy, lambda m: m.update(format="something-else"))
    refused(store_copy, "format is 'something-else'", "not a gpu-features store")


@pytest.mark.parametrize("key", ["shards", "config", "splits"])
def test_manifest_missing_key(store_copy, key):
    edit_manifest(store_copy, lambda m: m.pop(key))
    refused(store_copy, f"required key '{key}' is missing")


def test_manifest_wrong_type_and_bad_config(store_copy):
    edit_manifest(store_copy, lambda m: m.update(n_bars="30000"))
    refused(store_copy, "key 'n_bars' should be int, got str")


def test_manifest_bad_config(store_copy):
    edit_manifest(store_copy, lambda m: m["config"].update(atr_period=0))
    refused(store_copy, "bad config", "FeatureConfig.atr_period = 0 is out of range", "; rebuild the store.")


def test_shards_that_do_not_tile(store_copy):
    edit_manifest(store_copy, lambda m: m["shards"][1].update(first=7001))
    refused(store_copy, "shards[1] covers bars 7001..+7000 but bar 7000 comes next")


def test_tensor_shape_mismatch(store_copy):
    from safetensors.numpy import save_file

    p = shard0(store_copy)
    save_file({"features": np.zeros((7000, 9), np.float32), "timestamp": np.zeros(7000, np.int64),
               "valid": np.zeros(7000, bool)}, str(p))

    def fix(m):
        m["shards"][0]["bytes"] = p.stat().st_size
    edit_manifest(store_copy, fix)
    refused(store_copy, "tensor 'features' is F32 [7000, 9], expected F32 [7000, 10]")


def test_header_running_past_the_end(store_copy):
    p = shard0(store_copy)
    data = bytearray(p.read_bytes())
    data[0:8] = (len(data) * 2).to_bytes(8, "little")
    p.write_bytes(bytes(data))
    refused(store_copy, "header length", "runs past the file")


def test_missing_state_file(store_copy):
    (store_copy / "state.safetensors").unlink()
    refused(store_copy, "state file state.safetensors is missing")


# --- one test per remaining refusal of the store package (every message asserted) ----------------


def _forge_shard(store_copy, header: dict, data: bytes = b""):
    """Replace shard 0 with a safetensors file of the given header and data bytes; fix its recorded size."""
    raw = json.dumps(header).encode()
    p = shard0(store_copy)
    p.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    edit_manifest(store_copy, lambda m: m["shards"][0].update(bytes=p.stat().st_size))


def test_shard_too_short_for_a_header(store_copy):
    shard0(store_copy).write_bytes(b"\x01\x02")
    edit_manifest(store_copy, lambda m: m["shards"][0].update(bytes=2))
    refused(store_copy, "shard bars-00000.safetensors: file is 2 bytes, too short for a safetensors header")


def test_header_not_json_or_not_an_object(store_copy):
    p = shard0(store_copy)
    p.write_bytes((4).to_bytes(8, "little") + b"{no}")
    edit_manifest(store_copy, lambda m: m["shards"][0].update(bytes=12))
    refused(store_copy, "the safetensors header is not valid JSON")
    _forge_shard(store_copy, [1, 2])
    refused(store_copy, "the safetensors header is not a JSON object")


def test_malformed_tensor_entries(store_copy):
    _forge_shard(store_copy, {"features": {"dtype": "F32"}})
    refused(store_copy, "tensor 'features' has a malformed header entry")
    _forge_shard(store_copy, {"features": {"dtype": "F32", "shape": [2, 10], "data_offsets": [0, 80]}}, b"\0" * 40)
    refused(store_copy, "tensor 'features' (F32 [2, 10]) does not fit its byte range [0, 80) of 40 data bytes")


def test_overlapping_gaps_and_trailing_bytes(store_copy):
    two = {"a": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]},
           "b": {"dtype": "I64", "shape": [1], "data_offsets": [4, 12]}}
    _forge_shard(store_copy, two, b"\0" * 12)
    refused(store_copy, "tensor data overlaps or leaves a gap at byte 8")
    _forge_shard(store_copy, {"a": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 12)
    refused(store_copy, "4 bytes after the last tensor")


def test_shard_without_a_required_tensor(store_copy):
    _forge_shard(store_copy, {"timestamp": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8)
    refused(store_copy, "tensor 'features' is missing")


def test_manifest_entry_that_is_not_an_object(store_copy):
    edit_manifest(store_copy, lambda m: m["shards"].__setitem__(0, "bars-00000.safetensors"))
    refused(store_copy, "shards[0]: expected a JSON object")


def test_layout_that_does_not_cover_n_bars(store_copy):
    edit_manifest(store_copy, lambda m: m.update(n_bars=m["n_bars"] + 1))
    refused(store_copy, "series cover 30000 bars, n_bars says 30001")


def test_symbols_that_do_not_match_the_series(store_copy):
    edit_manifest(store_copy, lambda m: m.update(symbols=["SYN0", "OTHER"]))
    refused(store_copy, "symbols ['SYN0', 'OTHER'] do not match the series names")


def test_file_names_with_a_path(store_copy):
    edit_manifest(store_copy, lambda m: m["shards"][0].update(file="../bars-00000.safetensors"))
    refused(store_copy, "file name must not contain a path; the manifest is corrupt")


def test_feature_names_that_differ(store_copy):
    edit_manifest(store_copy, lambda m: m["feature_names"].reverse())
    refused(store_copy, "feature names", "differ from", "; rebuild the store.")
