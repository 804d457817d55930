"""train/embed.py and `python -m train embed`: one embedding per usable window, equal to Jade.encode pooled."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="embedding needs torch (make test installs it)")

import pyarrow.parquet as pq  # noqa: E402

from gpu_features.splits import SPLIT_NAMES  # noqa: E402
from gpu_features.windows import WindowSource  # noqa: E402
from tests.harness import one_sentence  # noqa: E402
from train.cli import main  # noqa: E402
from train.config import TrainError  # noqa: E402
from train.embed import embed_run, is_embeddings_file, pool, write_embeddings  # noqa: E402
from train.load import load_run  # noqa: E402


def test_pool_is_the_mean_over_valid_bars():
    states = torch.arange(24, dtype=torch.float32).view(2, 3, 4)
    valid = torch.tensor([[True, False, True], [False, False, False]])
    got = pool(states, valid)
    assert torch.equal(got[0], (states[0, 0] + states[0, 2]) / 2) and torch.equal(got[1], torch.zeros(4))


@pytest.mark.parametrize("split", ["all", "test"])
def test_embeddings_equal_jade_encode_batch_by_batch(trained_run, split):
    run_dir, store = trained_run
    run = load_run(run_dir)
    emb = embed_run(run, split=split, stride=7, batch_size=64)
    src = WindowSource.from_store(store, "cpu")
    want_starts = src.starts(None if split == "all" else split, 7, run.config.min_valid_fraction)
    assert np.array_equal(emb.start, want_starts) and len(want_starts) > 64
    K = run.window_length
    for a in range(0, len(want_starts), 64):  # the same batches: Jade.encode, unmasked, averaged by hand
        s = torch.as_tensor(want_starts[a:a + 64])
        idx = s[:, None] + torch.arange(K)
        X, valid = src.features[idx], src.valid[idx]
        with torch.no_grad():
            states = run.model.encode(X, torch.zeros_like(valid))
        w = valid.unsqueeze(-1).float()
        assert torch.equal(emb.embedding[a:a + 64], (states * w).sum(1) / w.sum(1).clamp(min=1.0))
    assert np.array_equal(emb.end_time, store.timestamps()[want_starts + K - 1])
    assert np.array_equal(emb.split, store.split_ids()[want_starts])
    assert emb.symbols == ("NQ",) and (emb.symbol == 0).all()
    if split == "test":
        assert (emb.split == 2).all()


def test_parquet_and_safetensors_hold_the_same_rows(trained_run, tmp_path):
    from safetensors.numpy import load_file

    emb = embed_run(load_run(trained_run[0]), split="val", stride=11)
    a = write_embeddings(emb, tmp_path / "e.parquet")
    b = write_embeddings(emb, tmp_path / "e.safetensors")
    table = pq.read_table(a)
    kind = table.schema.field("embedding").type
    assert kind.list_size == 16 and str(kind.value_type) == "float"
    assert np.array_equal(np.stack(table["embedding"].to_numpy(zero_copy_only=False)), emb.embedding.numpy())
    assert table["end_time"].cast("int64").to_numpy().tolist() == emb.end_time.tolist()
    assert set(table["split"].to_pylist()) == {"val"} and set(table["symbol"].to_pylist()) == {"NQ"}
    tensors = load_file(str(b))
    assert np.array_equal(tensors["embedding"], emb.embedding.numpy())
    assert np.array_equal(tensors["start"], emb.start) and (tensors["split"] == SPLIT_NAMES.index("val")).all()
    assert is_embeddings_file(a) and is_embeddings_file(b)


def test_the_command_writes_embeddings_and_refuses_what_is_not_ours(trained_run, tmp_path, capsys):
    run_dir, store = trained_run
    out = tmp_path / "emb.parquet"
    assert main(["embed", "--run", str(run_dir), "--split", "test", "--stride", "5", "--output", str(out)]) == 0
    said = capsys.readouterr().out
    assert "wrote" in said and "embeddings of 16 floats" in said
    n = pq.read_metadata(out).num_rows
    assert n == len(WindowSource.from_store(store, "cpu").starts("test", 5))
    meta = json.loads(pq.read_schema(out).metadata[b"jade"])
    assert meta["run_dir"] == str(run_dir) and meta["split"] == "test"
    # an embeddings file is replaced only with --overwrite; a file that is not one never
    assert main(["embed", "--run", str(run_dir), "--output", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["embed", "--run", str(run_dir), "--split", "val", "--output", str(out), "--overwrite"]) == 0
    capsys.readouterr()
    notes = tmp_path / "notes.parquet"
    notes.write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert main(["embed", "--run", str(run_dir), "--output", str(notes), *extra]) == 2
        err = capsys.readouterr().err
        assert "not an embeddings file" in err and one_sentence(err.strip().removeprefix("error: "))
    assert notes.read_text() == "mine"
    for bad, message in (("e.csv", "use .parquet or .safetensors"), (str(store.path / "e.parquet"), "inside the feature store")):
        assert main(["embed", "--run", str(run_dir), "--output", str(tmp_path / bad if bad == "e.csv" else bad)]) == 2
        assert message in capsys.readouterr().err
    assert not (store.path / "e.parquet").exists()
    assert main(["embed", "--run", str(tmp_path / "none"), "--output", str(tmp_path / "x.parquet")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_embedding_a_store_of_other_features_is_refused(trained_run, make_store, tmp_path):
    from gpu_features import synthetic
    from gpu_features.config import FeatureConfig

    other = make_store(synthetic.generate(3000, 1, 5), tmp_path / "o", config=FeatureConfig(zigzag_k=2.0))
    with pytest.raises(TrainError, match="other feature settings"):
        embed_run(load_run(trained_run[0]), [other.path])
