"""store/writer.py's direct writer: files written in place from the arrays are the safetensors library's
bytes (metadata sorted), hashed from what was written, and a failed write stops the files not yet started."""
import hashlib

import numpy as np
import pytest
from safetensors.numpy import load_file, save

from gpu_features.store import format as format_mod, writer
from tests.harness import fail_on_call


def library_bytes(tensors: dict, metadata: dict) -> bytes:
    """The oracle: the safetensors library's file, metadata keys sorted (format.canonical_safetensors)."""
    return format_mod.canonical_safetensors(save(tensors, metadata=metadata))


def shard_tensors(rng, n: int, first: int):
    feats = rng.normal(size=(n, 10)).astype(np.float32)
    valid = rng.random(n) < 0.9
    ts = np.arange(n, dtype=np.int64) * 60_000_000_000 + 1_546_300_800_000_000_000
    return writer._shard_tensors(feats, valid, ts, first)


@pytest.mark.parametrize("n, first", [(0, 0), (1, 0), (7, 3), (1000, 524288), (12345, 10**12)])
def test_shard_parts_are_the_library_bytes(n, first):
    tensors, metadata = shard_tensors(np.random.default_rng(n), n, first)
    parts = writer.safetensors_parts(tensors, metadata)
    assert b"".join(bytes(p) for p in parts) == library_bytes(tensors, metadata)
    # No copy: every tensor part is a view of the array's own memory.
    assert n == 0 or all(np.shares_memory(p, a) for p, a in zip(parts[1:], (tensors["timestamp"], tensors["features"],
                                                                   tensors["valid"])))


@pytest.mark.parametrize("m, symbols", [(0, 1), (1, 1), (440, 1), (37, 2000)])
def test_state_parts_are_the_library_bytes(m, symbols):
    rng = np.random.default_rng(m + symbols)
    tensors = {"checkpoint_bar": np.sort(rng.integers(0, 10**9, m)).astype("<i8"),
               "checkpoint_state": rng.normal(size=(m, 26)), "end_state": rng.normal(size=(symbols, 26))}
    metadata = {"version": "1", "format": format_mod.FORMAT}  # unsorted on purpose
    parts = writer.safetensors_parts(tensors, metadata)
    assert b"".join(bytes(p) for p in parts) == library_bytes(tensors, metadata)


def test_parts_refuse_an_array_that_is_not_contiguous():
    tensors = {"features": np.zeros((10, 20), np.float32)[:, ::2]}
    with pytest.raises(ValueError, match="C-contiguous"):
        writer.safetensors_parts(tensors, {})


def test_write_bytes_hashes_what_it_writes_block_by_block(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "WRITE_BLOCK", 1000)  # many blocks, a short last one
    tensors, metadata = shard_tensors(np.random.default_rng(1), 777, 5)
    times = writer.WriteTimes()
    rec = writer.write_bytes(tmp_path / "a.safetensors", writer.safetensors_parts(tensors, metadata), times)
    data = (tmp_path / "a.safetensors").read_bytes()
    assert data == library_bytes(tensors, metadata)
    assert rec == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert times.hash_s > 0 and times.write_s > 0
    back = load_file(tmp_path / "a.safetensors")
    assert all(np.array_equal(back[k], v) for k, v in tensors.items())


def test_write_stage_time_is_split_in_proportion_and_adds_up():
    clock = writer.WriteClock()
    clock.add_write_stage(1.0, [writer.WriteTimes(hash_s=0.3, write_s=0.1), writer.WriteTimes(hash_s=0.3, write_s=0.5)])
    assert clock.hash_s == pytest.approx(0.5) and clock.write_s == pytest.approx(0.5)
    clock.add_write_stage(0.2, [])
    assert clock.hash_s + clock.write_s == pytest.approx(1.2)


def test_no_shard_is_started_after_a_failed_write(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "write_workers", lambda n: 1)  # one thread: files in order
    monkeypatch.setattr(writer, "write_bytes", fail_on_call(writer.write_bytes, 2, OSError("disk full (injected)")))
    n = 5000
    feats, valid = np.ones((n, 10), np.float32), np.ones(n, bool)
    ts = np.arange(n, dtype=np.int64)
    written = []
    with pytest.raises(OSError, match="injected"):
        writer.write_shards(tmp_path, 0, writer.shard_ranges(0, n, 1000), 0, feats, valid, ts, written,
                            lambda *a: None)
    assert [p.name for p in written] == [format_mod.shard_name(k) for k in range(5)]  # the caller can remove all
    assert sorted(p.name for p in tmp_path.iterdir()) == [format_mod.shard_name(0)]  # 2 failed, 3..5 never started
