"""Sweep files and objectives: the shipped example, every refusal in one sentence, --grid flags, probe objectives."""
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from train import cli, sweep_file  # noqa: E402
from train.sweep_file import load_sweep_file, parse_grid_flag, parse_objective, quick_grid  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BASE = '[run]\nstore = "s"\ndevice = "cpu"\nepochs = 2\n'


def _file(tmp_path, text, name="sweep.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_example_is_the_old_pipelines_27_point_grid_in_loop_order():
    spec = load_sweep_file(ROOT / "examples" / "sweep.toml")
    assert spec.sampler == "grid" and spec.trials == 27 and spec.objective.name == "val_mae"
    assert spec.objective.direction == "minimize" and spec.pruner is None
    assert [p.name for p in spec.search] == ["lr", "hidden_size", "dropout"]
    grid = spec.grid()
    assert len(grid) == 27 and len({tuple(g.values()) for g in grid}) == 27
    # for lr: for hidden: for dropout: the last axis varies fastest
    assert grid[0] == {"lr": 3e-4, "hidden_size": 64, "dropout": 0.0}
    assert grid[1] == {"lr": 3e-4, "hidden_size": 64, "dropout": 0.1}
    assert grid[3] == {"lr": 3e-4, "hidden_size": 128, "dropout": 0.0}
    assert grid[26] == {"lr": 3e-3, "hidden_size": 256, "dropout": 0.2}
    assert spec.run["store"] == [str((Path.cwd() / "data/features/demo").resolve())]
    cfg = spec.trial_config(grid[5])
    assert (cfg.lr, cfg.hidden_size, cfg.dropout) == (3e-4, 128, 0.2) and cfg.profile == spec.run["profile"]


def test_ranges_choices_and_a_record_that_rebuilds_the_same_sweep(tmp_path):
    text = BASE + """
[search]
lr = { low = 1e-4, high = 1e-2, log = true }
hidden_size = { low = 8, high = 32, step = 8 }
mask = { choices = ["random", "patch"] }
dropout = [0, 0.25]

[study]
sampler = "tpe"
trials = 7
seed = 3
pruner = { kind = "hyperband", min_epochs = 1 }
"""
    spec = load_sweep_file(_file(tmp_path, text))
    p = {q.name: q for q in spec.search}
    assert p["lr"].log and p["lr"].is_range and p["hidden_size"].grid_values() == [8, 16, 24, 32]
    assert p["mask"].values == ("random", "patch") and p["dropout"].values == (0.0, 0.25)
    assert all(isinstance(v, float) for v in p["dropout"].values)  # ints given for a float field become floats
    assert spec.pruner == {"kind": "hyperband", "min_epochs": 1, "reduction_factor": 3}
    assert spec.max_epochs() == 2
    again = sweep_file.SweepSpec.from_record(json.loads(json.dumps(spec.record())), "sweep.json")
    assert again.record() == spec.record()
    optuna = pytest.importorskip("optuna", reason="sweeps need Optuna; not installed here")
    d = spec.distributions()
    assert isinstance(d["lr"], optuna.distributions.FloatDistribution) and d["lr"].log
    assert isinstance(d["hidden_size"], optuna.distributions.IntDistribution) and d["hidden_size"].step == 8
    assert isinstance(d["mask"], optuna.distributions.CategoricalDistribution)


@pytest.mark.parametrize("text, message", [
    ("[runs]\nepochs = 1\n[search]\nlr = [1e-3]\n", "unknown table(s) or key(s) runs; a sweep file has the tables"),
    (BASE + "[search]\nlr = [1e-3]\n[study]\nsamplr = \"grid\"\n", "unknown key(s) in [study]: samplr"),
    ("[run]\nepoch = 2\n[search]\nlr = [1e-3]\n", "[run]: unknown key(s) epoch; allowed keys are"),
    (BASE + "run_dir = \"x\"\n[search]\nlr = [1e-3]\n", "[run] sets run_dir, but every trial runs in"),
    (BASE, "[search] is empty; name at least one setting to search"),
    (BASE + "[search]\nlrate = [1e-3]\n", "search.lrate is not a searchable setting; search any of"),
    (BASE + "[search]\ndevice = [\"cpu\", \"cuda\"]\n", "search.device is not a searchable setting"),
    (BASE + "[search]\nepochs = [1, 2]\n", "search.epochs is also fixed in [run] (epochs = 2); keep it in one place"),
    (BASE + "[search]\nlr = []\n", "search.lr is an empty list; give at least one value"),
    (BASE + "[search]\nlr = [1e-3, 0.001]\n", "search.lr lists 0.001 twice; a grid point would run twice"),
    (BASE + "[search]\nhidden_size = [8, 6.5]\n", "search.hidden_size value 6.5 must be an integer, got 6.5"),
    (BASE + "[search]\nbf16 = [1, 0]\n", "search.bf16 values must be bool, got 1"),
    (BASE + "[search]\ndropout = [0.1, 1.5]\n", "search.dropout value 1.5 is not a valid run (JadeConfig.dropout = 1.5 "
                                                "is out of range"),
    (BASE + "[search]\nlr = { low = 0.1, high = 0.01 }\n[study]\nsampler = \"random\"\ntrials = 2\n",
     "search.lr: low 0.1 must be below high 0.01"),
    (BASE + "[search]\nweight_decay = { low = 0, high = 0.1, log = true }\n[study]\nsampler = \"random\"\ntrials = 2\n",
     "search.weight_decay: a log range needs low > 0"),
    (BASE + "[search]\nlr = { low = 1e-4, high = 1e-2, log = true }\n",
     "a grid needs finite values, but search.lr is a range without a step"),
    (BASE + "[search]\nhidden_size = { low = 8, high = 30, step = 8 }\n", "high - low = 22 is not a multiple of step 8"),
    (BASE + "[search]\nmask = { low = 1, high = 2 }\n", "mask is a str setting, so it takes a list of values"),
    (BASE + "[search]\nlr = { low = 1e-4, high = 1e-2, lg = true }\n", "search.lr: unknown range key(s) lg"),
    (BASE + "[search]\nlr = \"1e-3\"\n", "search.lr must be a list of values, {choices = [...]} or a range"),
    (BASE + "[search]\nlr = [1e-3, 3e-3]\n[study]\ntrials = 3\n",
     "study.trials = 3 but the grid has 2 point(s) and none is run twice"),
    (BASE + "[search]\nlr = [1e-3]\n[study]\nsampler = \"random\"\n", "study.trials is needed with sampler = 'random'"),
    (BASE + "[search]\nlr = [1e-3]\n[study]\nsampler = \"bayes\"\n", "study.sampler must be one of grid, random, tpe"),
    (BASE + "[search]\nseed = { low = 0, high = 10000, step = 1 }\n", "the grid has 10,001 points, more than the 10,000"),
    (BASE + "[search]\nlr = [1e-3]\n[study]\npruner = \"asha\"\n", "study.pruner must be one of none, median, hyperband"),
    (BASE + "[search]\nlr = [1e-3]\n[study]\npruner = { kind = \"median\", patience = 2 }\n",
     "study.pruner: unknown key(s) patience; the median pruner takes startup_trials, warmup_epochs"),
    (BASE + "[search]\nlr = [1e-3]\n[study]\npruner = { kind = \"hyperband\", reduction_factor = 1 }\n",
     "study.pruner.reduction_factor must be an integer >= 2"),
    (BASE + "[search]\nlr = [1e-3]\n[study]\nobjective = \"test_mae\"\n", "study.objective = 'test_mae' is not an objective"),
    (BASE + "[search]\nlr = [1e-3]\n[study]\ndirection = \"maximize\"\n",
     "study.direction maximize contradicts objective val_mae (lower is better)"),
    (BASE + "[search]\nlr = [1e-3]\n[study]\nobjective = \"probe:return-sign:5:pretrained:r2\"\n",
     "return-sign is measured by auc, log_loss or accuracy, not r2"),
    (BASE + "[search]\nlr = [1e-3]\n[study]\nobjective = \"probe:sign:5:pretrained:auc\"\n",
     "probe target 'sign:5' is not one of return-sign:N, realized-vol:N"),
    ("[run]\nstore = 3\n[search]\nlr = [1e-3]\n", "store must be a path or a list of paths, got 3"),
    ("[run]\nepochs = 0\n[search]\nlr = [1e-3]\n", "[run] is not a valid run (training option epochs = 0"),
    ("run = 3\n[search]\nlr = [1e-3]\n", "[run] must be a table, got 3"),
])
def test_bad_sweep_files_are_refused_in_one_sentence(tmp_path, text, message):
    path = _file(tmp_path, text)
    with pytest.raises(sweep_file.TrainError) as err:
        load_sweep_file(path)
    said = str(err.value)
    assert message in said, said
    assert "\n" not in said and said.startswith(str(path))


def test_the_command_refuses_a_bad_sweep_file_with_exit_2_and_one_line(tmp_path, capsys):
    pytest.importorskip("optuna", reason="sweeps need Optuna; not installed here")
    path = _file(tmp_path, BASE + "[search]\nlr = []\n")
    assert cli.main(["sweep", "--config", str(path), "--study-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "search.lr is an empty list" in err
    assert not (tmp_path / "d").exists()  # nothing is created for a refused sweep
    assert cli.main(["sweep", "--config", str(tmp_path / "nope.toml"), "--study-dir", str(tmp_path / "d")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_grid_flags_are_typed_by_the_training_setting():
    assert parse_grid_flag("lr=1e-3,3e-3") == ("lr", [1e-3, 3e-3])
    assert parse_grid_flag("hidden-size=8,16") == ("hidden_size", [8, 16])
    assert parse_grid_flag("bf16=true,false") == ("bf16", [True, False])
    assert parse_grid_flag("mask=random,patch") == ("mask", ["random", "patch"])
    for text, message in (("lr", "write NAME=V1,V2,..."), ("lrate=1", "'lrate' is not a training setting"),
                          ("hidden_size=8,x", "'x' is not a int value for hidden_size"),
                          ("bf16=yes", "'yes' is not a bool value for bf16")):
        with pytest.raises(sweep_file.TrainError) as err:
            parse_grid_flag(text)
        assert str(err.value).startswith(f"--grid {text!r}") and message in str(err.value)
    spec = quick_grid(["lr=1e-3,3e-3", "dropout=0.1,0.3"], {"epochs": 1, "device": "cpu"})
    assert spec.trials == 4 and spec.run["epochs"] == 1 and spec.grid()[1] == {"lr": 1e-3, "dropout": 0.3}
    with pytest.raises(sweep_file.TrainError, match="--grid lr is given twice"):
        quick_grid(["lr=1e-3", "lr=3e-3"], {"device": "cpu"})
    with pytest.raises(sweep_file.TrainError, match="search.epochs is also fixed in"):
        quick_grid(["epochs=1,2"], {"epochs": 1, "device": "cpu"})


def test_objectives_and_their_directions():
    o = parse_objective("val_mae")
    assert (o.name, o.direction, o.is_probe) == ("val_mae", "minimize", False)
    o = parse_objective("probe:return-sign:5:pretrained:auc")
    assert (o.target, o.arm, o.metric, o.direction) == ("return-sign:5", "pretrained", "auc", "maximize")
    assert parse_objective("probe:realized-vol:20:raw:qlike").direction == "minimize"
    assert parse_objective("probe:realized-vol:20:finetuned:r2", "maximize").direction == "maximize"
    for text, message in (("probe:return-sign:5:encoder:auc", "unknown probe arm 'encoder'"),
                          ("probe:return-sign:5:pretrained:f1", "unknown probe metric 'f1'"),
                          ("probe::pretrained:auc", "the probe target is empty"),
                          ("probe:auc", "is not an objective"), (3, "must be a string")):
        with pytest.raises(sweep_file.TrainError) as err:
            parse_objective(text)
        assert message in str(err.value)
    with pytest.raises(sweep_file.TrainError, match="contradicts objective probe:x:raw:log_loss"):
        parse_objective("probe:x:raw:log_loss", "maximize")
    with pytest.raises(sweep_file.TrainError, match="realized-vol is measured by r2 or qlike, not auc"):
        parse_objective("probe:realized-vol:5:raw:auc")


def test_a_probe_objective_is_read_from_the_runs_validation_numbers(tmp_path):
    """train.probe records summary["probe"][TARGET][SPLIT][ARM][METRIC] = {value, low, high}; a sweep ranks by
    the validation split and keeps the test number beside it."""
    def entry(v):
        return {"value": v, "low": v - 0.02, "high": v + 0.02}

    summary = {"val": {"mae": {"model": 0.17}},
               "probe": {"return-sign:5": {
                   "validation": {"pretrained": {"auc": entry(0.5123), "log_loss": entry(0.6931)},
                                  "raw": {"auc": entry(0.5001)}},
                   "test": {"pretrained": {"auc": entry(0.4987)}, "raw": {"auc": entry(0.51)}}}}}
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    summary = json.loads(path.read_text())
    o = parse_objective("probe:return-sign:5:pretrained:auc")
    assert o.value(summary) == 0.5123 and o.interval(summary) == (0.5123 - 0.02, 0.5123 + 0.02)
    assert o.test_value(summary) == 0.4987
    assert parse_objective("probe:return-sign:5:raw:auc").value(summary) == 0.5001
    assert parse_objective("val_mae").value(summary) == 0.17 and parse_objective("val_mae").interval(summary) == (None, None)
    assert parse_objective("val_mae").test_value(summary) is None
    with pytest.raises(sweep_file.TrainError) as err:
        parse_objective("probe:return-sign:5:finetuned:auc").value(summary, path)
    assert str(err.value).startswith(str(path)) and "no probe result return-sign:5 / validation / finetuned / auc" in \
        str(err.value)
    with pytest.raises(sweep_file.TrainError, match="no val.mae.model"):
        parse_objective("val_mae").value({"probe": {}}, path)


def test_a_probe_objective_gives_each_trial_its_probe(tmp_path):
    """``probe`` is a run-file key: the trial's run file asks for the objective's target."""
    text = BASE + "[search]\nlr = [1e-3, 3e-3]\n[study]\nobjective = \"probe:return-sign:5:pretrained:auc\"\n"
    spec = load_sweep_file(_file(tmp_path, text))
    assert spec.objective.direction == "maximize"
    assert spec.trial_run({"lr": 1e-3})["probe"] == ["return-sign:5"]
    with pytest.raises(sweep_file.TrainError, match="needs objective = val_mae"):
        load_sweep_file(_file(tmp_path, text + "pruner = \"median\"\n"))


def test_samplers_draw_each_trial_from_the_seed_and_its_number(tmp_path):
    """Trial n's parameters are a function of (seed, n): the same whichever worker process draws them."""
    optuna = pytest.importorskip("optuna", reason="sweeps need Optuna; not installed here")
    from train.sweep import make_sampler

    text = BASE + "[search]\nlr = { low = 1e-4, high = 1e-2, log = true }\nhidden_size = { low = 8, high = 64 }\n" \
                  "[study]\nsampler = \"random\"\ntrials = 4\nseed = 7\n"
    spec = load_sweep_file(_file(tmp_path, text))

    def draw(n, seed_spec=spec):
        study = optuna.create_study()
        study.sampler = make_sampler(optuna, seed_spec, n)
        return study.ask(seed_spec.distributions()).params

    assert draw(0) == draw(0) and draw(1) == draw(1) and draw(0) != draw(1)
    p = draw(2)
    assert 1e-4 <= p["lr"] <= 1e-2 and 8 <= p["hidden_size"] <= 64 and isinstance(p["hidden_size"], int)
    other = load_sweep_file(_file(tmp_path, text.replace("seed = 7", "seed = 8"), "other.toml"))
    assert draw(0, other) != draw(0)
