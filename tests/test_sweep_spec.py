"""Sweep specs: ranges, lists, TOML, random search, trials and their keys, errors."""

from __future__ import annotations

import importlib
import math

import pytest

from mlplab.errors import ConfigError
from mlplab.sweep.planner import bytes_per_model, default_max_models, group_key, plan
from mlplab.sweep.spec import (
    DEFAULTS,
    Distribution,
    SweepSpec,
    load_toml,
    make_trial,
    parse_axis,
    parse_random_axis,
    parse_range,
)


def test_ranges_include_both_ends_and_are_decimal():
    assert parse_range("dropout1", "0:0.9:0.1") == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert parse_range("lr", "0.1:0.3:0.1") == (0.1, 0.2, 0.3)
    assert parse_range("epochs", "2:10:4") == (2, 6, 10)
    assert parse_range("lr", "0.1:0.25:0.1") == (0.1, 0.2)  # STOP not on the lattice: values <= STOP


@pytest.mark.parametrize(
    ("text", "name", "values"),
    [
        ("dropout2=0,0.5", "dropout2", (0.0, 0.5)),
        ("lr=0.5", "lr", (0.5,)),
        ("weight-decay=0,1e-4", "weight_decay", (0.0, 1e-4)),
        ("wd=3", "weight_decay", (3.0,)),
        ("hidden=256,256-256,512-256-128", "hidden", ((256,), (256, 256), (512, 256, 128))),
        ("init=normal:0.01,normal:0.1,xavier", "init", ("normal:0.01", "normal:0.1", "xavier")),
        ("optimizer=sgd,adam", "optimizer", ("sgd", "adam")),
        ("batch_size=64,256", "batch_size", (64, 256)),
        ("decay_biases=true,false", "decay_biases", (True, False)),
    ],
)
def test_parse_axis(text, name, values):
    assert parse_axis(text) == (name, values)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("dropout1", "--grid"),  # no '='
        ("depth=1,2", "hyperparameter"),
        ("dropout1=0:0.9:0", "dropout1"),  # step 0
        ("dropout1=0.9:0:0.1", "dropout1"),  # stop < start
        ("lr=fast", "lr"),
        ("batch_size=1.5", "batch_size"),
        ("init=normal:-1", "init"),
        ("activation=swish", "activation"),
        ("lr=0.1,,0.2", "lr"),
        ("dropout1=0:1:1e-9", "dropout1"),  # a billion values
    ],
)
def test_bad_axes_name_the_field(text, field):
    with pytest.raises(ConfigError) as info:
        parse_axis(text)
    assert info.value.field == field


def test_the_issue_example_expands_to_300_trials():
    spec = SweepSpec(
        base={
            "hidden": (256, 256),
            "epochs": 10,
            "lr": 0.5,
            "batch_size": 256,
            "optimizer": "sgd",
            "init": "normal:0.01",
        },
        grid=dict([parse_axis("dropout1=0:0.9:0.1"), parse_axis("dropout2=0:0.9:0.1")]),
        seeds=(0, 1, 2),
    )
    trials = spec.trials()
    assert len(trials) == 300 and len({t.key for t in trials}) == 300
    assert [t.seed for t in trials[:100]] == [0] * 100  # seeds outermost
    t = trials[13]
    assert t.model.hidden == (256, 256) and t.model.dropout == (0.1, 0.3)
    assert t.model.sizes == [784, 256, 256, 10] and t.train.lr == 0.5 and t.train.epochs == 10
    assert trials[0].model.dropout == ()  # p = 0 everywhere is a model without dropout
    assert t.params()["dropout1"] == 0.1 and t.params()["dropout2"] == 0.3 and t.params()["hidden"] == "256-256"


def test_dropout_applies_to_all_layers_and_dropout_n_overrides_it():
    t = make_trial({**DEFAULTS, "hidden": (8, 8, 8), "dropout": 0.5, "dropout2": 0.1}, seed=0)
    assert t.model.dropout == (0.5, 0.1, 0.5)


def test_dropout_beyond_the_depth_is_an_error_unless_zero():
    with pytest.raises(ConfigError, match="dropout2"):
        make_trial({**DEFAULTS, "hidden": (8,), "dropout2": 0.5}, seed=0)
    assert make_trial({**DEFAULTS, "hidden": (8,), "dropout2": 0.0}, seed=0).model.dropout == ()


def test_invalid_values_are_caught_when_trials_are_made():
    with pytest.raises(ConfigError, match="dropout"):
        SweepSpec(grid={"dropout1": (0.5, 1.0)}).trials()
    with pytest.raises(ConfigError, match="lr"):
        SweepSpec(grid={"lr": (0.1, -1.0)}).trials()


def test_keys_identify_configuration_and_seed():
    a = make_trial({**DEFAULTS, "lr": 0.5}, seed=0)
    assert a.key == make_trial({**DEFAULTS, "lr": 0.5}, seed=0).key
    assert a.key != make_trial({**DEFAULTS, "lr": 0.5}, seed=1).key
    assert a.key != make_trial({**DEFAULTS, "lr": 0.25}, seed=0).key
    assert a.key != make_trial({**DEFAULTS, "lr": 0.5}, seed=0, n_inputs=32).key
    # dropout=0.5 and dropout1=0.5 describe the same one-layer model: one trial, not two
    spec = SweepSpec(base={"hidden": (8,)}, grid={"dropout": (0.5,), "dropout1": (0.5,)})
    assert len(spec.trials()) == 1


def test_random_search_is_reproducible_and_within_bounds():
    spec = SweepSpec(
        grid={"hidden": ((8,), (16,))},
        random={"lr": "loguniform:0.001:1", "activation": "relu,tanh"},
        samples=20,
        search_seed=3,
    )
    configs = spec.configurations()
    assert len(configs) == 40
    assert (
        configs
        == SweepSpec(
            grid={"hidden": ((8,), (16,))},
            random={"lr": "loguniform:0.001:1", "activation": "relu,tanh"},
            samples=20,
            search_seed=3,
        ).configurations()
    )
    assert all(0.001 <= c["lr"] <= 1 for c in configs)
    assert {c["activation"] for c in configs} == {"relu", "tanh"}
    logs = [math.log10(c["lr"]) for c in configs]
    assert min(logs) < -2 and max(logs) > -1  # spread over the decades, not clustered near 1
    other = SweepSpec(random={"lr": "loguniform:0.001:1"}, samples=20, search_seed=4).configurations()
    assert [c["lr"] for c in other] != [c["lr"] for c in configs[:20]]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("lr=loguniform:0:1", "lr"),
        ("lr=uniform:1:0.5", "lr"),
        ("batch_size=uniform:1:9", "batch_size"),
        ("lr=loguniform:a:b", "lr"),
        ("lr", "--random"),
    ],
)
def test_bad_random_axes(text, field):
    with pytest.raises(ConfigError) as info:
        parse_random_axis(text)
    assert info.value.field == field


def test_random_axis_parses():
    assert parse_random_axis("lr=uniform:0.1:0.5") == ("lr", Distribution("uniform", 0.1, 0.5))
    assert parse_random_axis("hidden=16,32-32")[1].choices == ((16,), (32, 32))


def test_spec_validation():
    with pytest.raises(ConfigError, match="seeds"):
        SweepSpec(seeds=())
    with pytest.raises(ConfigError, match="seeds"):
        SweepSpec(seeds=(0, 0))
    with pytest.raises(ConfigError, match="either a grid axis or a random axis"):
        SweepSpec(grid={"lr": (0.1,)}, random={"lr": "uniform:0.1:1"})
    with pytest.raises(ConfigError, match="sweep"):
        SweepSpec(grid={"lr": tuple(range(1, 1001)), "weight_decay": tuple(range(101))})


def test_toml_file(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(
        "seeds = 2\nfirst_seed = 5\n[base]\nhidden = [32, 16]\nlr = 0.5\n"
        '[grid]\ndropout1 = "0:0.2:0.1"\nhidden = [[32, 16], "64-16"]\n[random]\nweight_decay = "uniform:0:0.01"\n'
        "samples = 3\n"
    )
    with pytest.raises(ConfigError, match="samples"):  # samples inside [random] is a typo: a top-level key
        load_toml(path)
    path.write_text(path.read_text().replace("samples = 3\n", "").replace("seeds = 2\n", "seeds = 2\nsamples = 3\n"))
    spec = load_toml(path)
    assert spec.seeds == (5, 6) and spec.samples == 3
    assert spec.grid == {"dropout1": (0.0, 0.1, 0.2), "hidden": ((32, 16), (64, 16))}
    trials = spec.trials()
    assert len(trials) == 2 * 3 * 2 * 3
    assert spec.to_dict()["grid"]["hidden"] == ["32-16", "64-16"]
    assert SweepSpec.from_dict(spec.to_dict()).trials() == trials


def test_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(bad)
    bad.write_text("[grid]\nlearning_rate = [0.1]\n")
    with pytest.raises(ConfigError, match="hyperparameter"):
        load_toml(bad)


def test_planner_groups_same_shapes_and_cuts_near_equal_chunks():
    spec = SweepSpec(grid={"hidden": ((8,), (16,)), "lr": tuple(0.1 * i for i in range(1, 11))}, seeds=(0, 1))
    trials = spec.trials(32, 10)
    groups = plan(trials, max_models=4)
    # 2 seeds x 2 shapes = 4 keys of 10 trials, each cut into 3 chunks of <= 4 (4 + 3 + 3)
    assert len(groups) == 12 and [g.index for g in groups] == list(range(12))
    assert sorted(t.key for g in groups for t in g.trials) == sorted(t.key for t in trials)
    for g in groups:
        assert len({group_key(t) for t in g.trials}) == 1 and len(g) <= 4
    assert plan(trials, 100) == plan(trials, 100)  # deterministic
    assert [len(g) for g in plan(trials[:10], 4)] == [4, 3, 3]
    stored = {t.key for t in groups[0].trials[:2]}
    assert len(groups[0].without(stored)) == len(groups[0]) - 2
    with pytest.raises(ConfigError, match="max_models"):
        plan(trials, 0)


def test_default_group_size_on_cpu_fits_the_cache():
    trials = SweepSpec(base={"hidden": (256, 256)}, grid={"lr": (0.1, 0.2)}).trials()
    assert default_max_models(trials, "cpu") == 32  # (32, 256, 256) float32 activations = 8 MiB
    assert bytes_per_model(trials[0]) > 4 * (784 * 256 + 256 * 256 + 256 * 10)


# --- the hyperparameter table (mlplab.sweep.hyperparameters) drives spec, results and CLI ---

# one value per hyperparameter that differs from its default
NOT_DEFAULT = {
    "hidden": (8, 4),
    "activation": "tanh",
    "init": "xavier",
    "dropout": 0.3,
    "lr": 0.5,
    "weight_decay": 0.01,
    "decay_biases": False,
    "optimizer": "adam",
    "batch_size": 64,
    "epochs": 3,
    "loss": "mse",
    "l1": 0.001,
    "bias": False,
    "precision": "bf16",
    "features": 20,
}


def test_the_tables_defaults_are_the_library_configs_defaults():
    from mlplab.models import ModelConfig
    from mlplab.sweep.hyperparameters import HYPERPARAMETERS
    from mlplab.train import TrainConfig

    configs = {"model": ModelConfig(), "train": TrainConfig()}
    for h in HYPERPARAMETERS:
        if h.name == "dropout":  # ModelConfig's dropout=() means p = 0 after every layer
            assert configs["model"].dropout == () and h.default == 0.0
        elif h.name == "features":  # None: every column of the data (n_inputs comes from the data)
            assert h.default is None and h.field == "n_inputs"
        else:
            assert getattr(configs[h.config], h.field) == h.default, h.name
    assert DEFAULTS == {h.name: h.default for h in HYPERPARAMETERS}
    assert list(DEFAULTS) == [h.name for h in HYPERPARAMETERS]


def test_the_tables_choices_are_the_librarys():
    from mlplab.models import ACTIVATIONS
    from mlplab.sweep.hyperparameters import BY_NAME
    from mlplab.train import OPTIMIZERS

    assert BY_NAME["activation"].choices == tuple(ACTIVATIONS)
    assert BY_NAME["optimizer"].choices == OPTIMIZERS


def test_every_table_entry_has_a_reader_and_nothing_else_does():
    from mlplab.sweep import spec
    from mlplab.sweep.hyperparameters import NAMES

    assert list(spec._READERS) == list(NAMES)
    assert set(NOT_DEFAULT) == set(NAMES)


def test_make_trial_sets_each_hyperparameters_config_field():
    from mlplab.sweep.hyperparameters import HYPERPARAMETERS

    trial = make_trial({**DEFAULTS, **NOT_DEFAULT}, seed=4)
    for h in HYPERPARAMETERS:
        got = getattr(trial.model if h.config == "model" else trial.train, h.field)
        want = (NOT_DEFAULT["dropout"],) * 2 if h.name == "dropout" else NOT_DEFAULT[h.name]
        assert got == want, h.name
    # params() reads back what make_trial was given, in table order, as the store keeps it
    params = trial.params()
    assert list(params) == [
        "hidden",
        "activation",
        "init",
        "dropout1",
        "dropout2",
        "lr",
        "weight_decay",
        "decay_biases",
        "optimizer",
        "batch_size",
        "epochs",
        "loss",
        "l1",
        "bias",
        "precision",
        "features",
    ]
    assert params["hidden"] == "8-4" and params["dropout2"] == 0.3 and params["decay_biases"] is False
    again = make_trial({**DEFAULTS, **{k: parse_axis(f"{k}={v}")[1][0] for k, v in params.items()}}, seed=4)
    assert again == trial


def test_entries_added_later_are_keyed_only_off_their_default():
    base = make_trial(DEFAULTS, seed=0)
    keys = {base.key}
    later = (("loss", "mse"), ("l1", 0.01), ("bias", False), ("precision", "bf16"), ("features", 20))
    for name, value in later:
        trial = make_trial({**DEFAULTS, name: value}, seed=0)
        assert trial.params()[name] == value
        keys.add(trial.key)
    assert len(keys) == len(later) + 1  # each non-default value is a model of its own in the store
    assert make_trial({**DEFAULTS, "features": 784}, seed=0).key == base.key  # all 784 columns: the default


def test_keys_are_unchanged_by_the_table():
    # keys index stored results: a sweep stored by earlier versions must resume, so these never change
    assert make_trial(DEFAULTS, seed=0).key == "2567c775d3fe00c3cb4a3f0a"
    assert make_trial({**DEFAULTS, "hidden": ()}, seed=0).key == "a9fffe3527b5719bf615f79e"
    deep = make_trial({**DEFAULTS, "hidden": (8, 8, 8), "dropout": 0.5, "dropout2": 0.1, "lr": 1}, seed=3)
    assert deep.key == "a5ef1b30cb3b57f18ea1f0a5" and deep.params()["lr"] == 1.0  # lr=1 is stored as 1.0


def test_result_columns_follow_the_table():
    from mlplab.sweep.results import _ordered

    columns = ["epochs", "dropout10", "lr", "dropout2", "hidden", "dropout1", "decay_biases", "activation"]
    assert _ordered(columns) == [
        "hidden",
        "activation",
        "dropout1",
        "dropout2",
        "dropout10",
        "lr",
        "decay_biases",
        "epochs",
    ]


def test_the_table_module_imports_nothing_heavy_and_the_package_is_lazy():
    import subprocess
    import sys

    code = (
        "import sys; import mlplab.sweep.hyperparameters; import mlplab.sweep; "
        "print(','.join(m for m in ('torch', 'pandas', 'numpy', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
    import mlplab.sweep

    assert sorted(mlplab.sweep._EXPORTS) == sorted(mlplab.sweep.__all__)
    for name in mlplab.sweep.__all__:  # every exported name still imports from the package
        module = importlib.import_module(f"mlplab.sweep.{mlplab.sweep._EXPORTS[name]}")
        assert getattr(mlplab.sweep, name) is getattr(module, name)
    with pytest.raises(AttributeError, match="no_such_name"):
        mlplab.sweep.no_such_name  # noqa: B018


def test_the_docs_table_agrees_with_the_hyperparameter_table():
    from pathlib import Path

    from mlplab.sweep.hyperparameters import AXIS_NAMES, HYPERPARAMETERS, default_text

    page = (Path(__file__).resolve().parents[1] / "docs" / "sweep.md").read_text(encoding="utf-8")
    lines = page.splitlines()
    start = lines.index("| name | sets | default | meaning | as text |") + 2
    end = lines.index("", start)
    rows = [line.split("|")[1:-1] for line in lines[start:end]]
    documented = {cells[0].strip(" `"): [c.strip(" `") for c in cells[1:3]] for cells in rows}
    assert list(documented) == list(AXIS_NAMES)
    for h in HYPERPARAMETERS:
        sets, default = documented[h.name]
        assert sets == f"{h.config.capitalize()}Config.{h.field}" and default == default_text(h.name), h.name
