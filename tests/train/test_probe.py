"""train/probe.py and `python -m train probe`: every arm on identical purged samples, no skill on a random walk."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the probe needs torch (make test installs it)")

from gpu_features.ingest import Bars  # noqa: E402
from gpu_features.synthetic import session_timestamps  # noqa: E402
from tests.harness import one_sentence, write_parquet  # noqa: E402
from tests.train.runs import tiny  # noqa: E402
from train import protocol  # noqa: E402
from train.cli import main  # noqa: E402
from train.config import TrainError  # noqa: E402
from train.load import load_run  # noqa: E402
from train.loop import train  # noqa: E402
from train.probe import ARMS, ProbeSettings, headline, run_probe  # noqa: E402
from train.targets import Target, labels  # noqa: E402

FAST = ProbeSettings(stride=3, max_windows=4000, resamples=200)


def random_walk(n: int, seed: int) -> Bars:
    """One series of a pure Gaussian random walk on a 0.25 tick: nothing about the future is in the past."""
    rng = np.random.default_rng(seed)
    close = np.round(20_000 * np.exp(np.cumsum(rng.normal(0, 4e-4, n))) * 4) / 4
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = np.round(np.abs(rng.normal(0, 3, (2, n))) * 4) / 4
    high = np.maximum(open_, close) + wick[0]
    low = np.minimum(open_, close) - wick[1]
    return Bars(open_, high, low, close, session_timestamps(n), np.array([0]), ("RW",))


@pytest.fixture(scope="module")
def walk_run(make_store, tmp_path_factory):
    """A tiny run on a 24,000-bar random walk store (built from a parquet file, so its bars can be re-read)."""
    d = tmp_path_factory.mktemp("walk")
    store = make_store(write_parquet(d / "walk.parquet", random_walk(24_000, 7)), d / "store")
    train(store.path, d / "run", tiny(epochs=1, hidden_size=8, max_train_windows=256, max_val_windows=64,
                                      max_final_windows=64))
    return load_run(d / "run"), store


def test_no_arm_finds_skill_on_a_random_walk(walk_run):
    run, _ = walk_run
    record = run_probe(run, ["return-sign:5", "realized-vol:5"], settings=FAST)
    sign = record["targets"]["return-sign:5"]
    assert set(sign["test"]) == set(ARMS) - {"finetuned"}
    for arm, metrics in sign["test"].items():
        auc = metrics["auc"]
        assert auc["low"] <= 0.5 <= auc["high"], (arm, auc)  # indistinguishable from a coin
    assert sign["test"]["baseline"]["auc"]["value"] == 0.5  # the prior ranks nothing
    used = {s: c["used"] for s, c in sign["samples"].items()}
    assert min(used.values()) > 300
    vol = record["targets"]["realized-vol:5"]
    for arm in ("raw", "random", "pretrained"):  # constant volatility: nothing beats the HAR lags by much
        assert vol["test"][arm]["r2"]["value"] < 0.05


def test_the_probe_uses_identical_purged_samples_for_every_arm(walk_run):
    run, store = walk_run
    record = run_probe(run, ["return-sign:3"], settings=FAST)
    t = record["targets"]["return-sign:3"]
    K, N = run.window_length, 3
    assert t["embargo_bars"] == K + N
    for split, c in t["samples"].items():
        assert c["used"] == c["windows"] - c["past_segment"] - c["degenerate"] - c["purged"] - c["embargoed"]
    assert t["samples"]["val"]["embargoed"] > 0 and t["samples"]["train"]["purged"] > 0
    assert 0.35 < t["up_share"]["test"] < 0.65
    assert set(t["lambda"]) == {"raw", "random", "pretrained"}


def test_a_leaky_probe_is_stopped(walk_run, monkeypatch):
    """Purging and the embargo switched off (the test-only hook): the probe refuses to report anything."""
    monkeypatch.setattr(protocol, "UNSAFE_NO_PURGE_FOR_TESTS", True)
    with pytest.raises(protocol.LeakageError):
        run_probe(walk_run[0], ["return-sign:5"], settings=FAST)


def test_labels_of_the_probe_equal_numpy_on_the_stores_bars(walk_run):
    run, store = walk_run
    from train.targets import source_closes

    close = source_closes([store])
    ends = np.arange(run.window_length - 1, store.n_bars - 10, 97)
    got = labels(close, store.segment_bounds(), ends, Target("return-sign", 10))
    want = (np.log(close[ends + 10]) - np.log(close[ends]))
    ok = want != 0
    assert np.array_equal(got.y[ok], (want[ok] > 0).astype(float)) and np.isnan(got.y[~ok]).all()


def test_finetuning_is_an_arm_on_the_same_samples(walk_run):
    run, _ = walk_run
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    record = run_probe(run, ["return-sign:5"], settings=ProbeSettings(stride=9, max_windows=1500, resamples=50,
                                                                       finetune=True, finetune_epochs=1))
    t = record["targets"]["return-sign:5"]
    assert "finetuned" in t["test"] and 0.0 <= t["test"]["finetuned"]["auc"]["value"] <= 1.0
    assert t["samples"] == run_probe(run, ["return-sign:5"], settings=ProbeSettings(
        stride=9, max_windows=1500, resamples=50))["targets"]["return-sign:5"]["samples"]
    after = run.model.state_dict()  # a copy was fine-tuned, not the loaded encoder
    assert all(torch.equal(before[k], after[k]) for k in before) and not run.model.training


def test_settings_and_targets_are_refused_in_one_sentence(walk_run):
    run, _ = walk_run
    for kw, message in ((dict(stride=0), "stride must be a whole number >= 1"),
                        (dict(max_windows=5), "max_windows must be >= 100"),
                        (dict(resamples=2), "resamples must be a whole number >= 10")):
        with pytest.raises(TrainError, match=message) as err:
            ProbeSettings(**kw)
        assert one_sentence(str(err.value))
    with pytest.raises(TrainError, match=r"--embargo 20 is shorter than K \+ N = 110 bars"):
        run_probe(run, ["return-sign:5"], settings=ProbeSettings(stride=3, max_windows=1000, resamples=20, embargo=20))
    with pytest.raises(TrainError, match="is not one of return-sign:N"):
        run_probe(run, ["direction:5"])


def test_the_command_prints_the_table_and_writes_probe_json_and_chart(walk_run, capsys):
    run, _ = walk_run
    args = ["probe", "--run", str(run.run_dir), "--target", "return-sign:5", "--stride", "3", "--max-windows", "3000",
            "--resamples", "100", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for word in ("baseline", "raw", "random", "pretrained", "auc test", "embargoed", "purged", "no arm should"):
        assert word in out
    record = json.loads((run.run_dir / "probe.json").read_text())
    assert record["format"] == "jade-probe" and "return-sign:5" in record["targets"]
    assert record["protocol"]["embargo"].startswith("samples starting fewer than")
    pytest.importorskip("matplotlib", reason="the chart needs matplotlib")
    assert (run.run_dir / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (run.run_dir / "probe.json").write_text('{"mine": 1}')  # not a probe record: never replaced
    assert main(args) == 2
    assert "is not a probe record of ours" in capsys.readouterr().err
    assert (run.run_dir / "probe.json").read_text() == '{"mine": 1}'
    (run.run_dir / "probe.json").unlink()


def test_a_run_with_probe_records_its_headline_in_the_summary(walk_run, tmp_path):
    run, store = walk_run
    summary = train(store.path, tmp_path / "r", tiny(epochs=1, hidden_size=8, max_train_windows=128,
                                                     max_val_windows=64, max_final_windows=64),
                    probe=["realized-vol:4"])
    saved = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert saved["probe"] == json.loads(json.dumps(summary["probe"]))
    entry = saved["probe"]["realized-vol:4"]
    assert set(entry) == {"validation", "test", "embargo_bars", "samples"}
    assert set(entry["validation"]["pretrained"]) == {"r2", "qlike"}
    assert json.loads((tmp_path / "r" / "config.json").read_text())["probe"] == ["realized-vol:4"]
    assert (tmp_path / "r" / "probe.json").is_file()
    record = json.loads((tmp_path / "r" / "probe.json").read_text())
    assert headline(record) == saved["probe"]
    # the run probed its in-memory best weights on its own device copy of the features: the run loaded back
    # from disk and probed from scratch gives the same numbers
    again = headline(run_probe(load_run(tmp_path / "r"), ["realized-vol:4"]))
    assert json.loads(json.dumps(again)) == saved["probe"]
    with pytest.raises(TrainError, match="is not one of return-sign:N"):
        train(store.path, tmp_path / "r2", tiny(epochs=1), probe=["sign:4"])
    assert not (tmp_path / "r2").exists()
