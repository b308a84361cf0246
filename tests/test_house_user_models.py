"""Tests of the learner's own House Prices models: ``mlplab.house.cv``, ``TorchRegressor``,
``MODULE:NAME``, the paired study, leak-freedom for user code, and the errors for bad objects.

Small generated tables in the Kaggle schema (from ``test_house``); the real-data smoke tests run
only when ``MLPLAB_DATA`` points at the folder holding ``house-prices/``.
"""

from __future__ import annotations

import math
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import Ridge
from test_house import isolated, make_houses, write_csvs  # noqa: F401 - isolated: an autouse fixture
from torch import nn
from typer.testing import CliRunner

import mlplab.house
from mlplab.cli.house import app as house_app
from mlplab.data import sources
from mlplab.data.batching import Data, Split
from mlplab.errors import ConfigError
from mlplab.house import (
    CVStudy,
    FeatureConfig,
    HousePreprocessor,
    OutlierRule,
    OwnModelError,
    TorchRegressor,
    as_model,
    check_schema,
    cross_validate,
    cv,
    fit_predict,
    load,
)
from mlplab.house.data import TARGET
from mlplab.house.features import log_price, log_target
from mlplab.house.folds import fold_indices
from mlplab.house.models import LINEAR_FEATURES, MODELS
from mlplab.house.own import MEMORY_FACTOR, resolve
from mlplab.stats import paired
from mlplab.train import TrainConfig, fit

torch.set_num_threads(1)
REAL_DATA = os.environ.get(sources.ENV_VAR)  # read at import: the fixtures clear it for each test


@pytest.fixture(scope="module")
def houses() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A checked (train, test) pair: 120 training and 30 test houses."""
    train = check_schema(make_houses(120, seed=11), "train")
    test = check_schema(make_houses(30, seed=12, with_price=False, first_id=121), "test")
    return train, test


def small_net(n_features: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_features, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))


class SmallNet(nn.Module):
    """An ``nn.Module`` subclass taking the number of features, as a factory does."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(n_features, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x))).squeeze(1)  # (B,): allowed as well as (B, 1)


QUICK_TORCH = TorchRegressor(small_net, epochs=3, batch_size=32)


def write_module(folder: Path, name: str, source: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


# --------------------------------------------------------------------------------------------
# The same footing: a user's model is fitted and scored exactly as the members are
# --------------------------------------------------------------------------------------------


def test_a_users_ridge_is_scored_exactly_as_the_registered_ridge_on_its_features(houses, monkeypatch):
    train, _ = houses
    from mlplab.house.models import Pipeline, RidgeConfig

    # the registered ridge, on the features a user's model gets by default (the mlp member's)
    monkeypatch.setitem(MODELS, "ridge", Pipeline("ridge", RidgeConfig(alpha=50.0), LINEAR_FEATURES))
    study = cv(Ridge(alpha=50.0), train, compare=("ridge",), folds=3)
    assert isinstance(study, CVStudy) and study.names == ("Ridge", "ridge")
    np.testing.assert_allclose(study.fold_scores("Ridge"), study.fold_scores("ridge"), rtol=1e-10)
    # and by hand: outliers dropped from the training rows, features fitted on them, y = log1p(price)
    for i, (tr, va) in enumerate(fold_indices(len(train), 3, 0)):
        fold = OutlierRule().keep(train.iloc[tr])
        pre = HousePreprocessor(LINEAR_FEATURES).fit(fold)
        z = Ridge(alpha=50.0).fit(pre.transform(fold), log_target(fold)).predict(pre.transform(train.iloc[va]))
        y = np.log(train[TARGET].to_numpy()[va])
        assert study.fold_scores("Ridge")[0, i] == pytest.approx(np.sqrt(np.mean((log_price(z) - y) ** 2)), rel=1e-10)


def test_a_users_network_runs_through_cv_and_fit_predict(houses):
    train, test = houses
    for model in (QUICK_TORCH, TorchRegressor(SmallNet, epochs=2)):
        study = cv(model, train, compare=("ridge",), folds=3)
        assert np.isfinite(study.fold_scores(study.names[0])).all()
    # a bare factory or subclass is wrapped in TorchRegressor with its defaults
    assert as_model(small_net).regressor.kind == as_model(SmallNet).regressor.kind == "network"
    prices = fit_predict(train, test, QUICK_TORCH, seed=3)
    assert prices.shape == (len(test),) and np.isfinite(prices).all() and (prices > 0).all()
    np.testing.assert_array_equal(prices, fit_predict(train, test, QUICK_TORCH, seed=3))  # seeded


def test_torch_regressor_is_mlplab_train_fit_on_the_standardized_target():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(90, 5)), 12.0 + 0.3 * rng.normal(size=90)
    state = torch.random.get_rng_state()
    reg = TorchRegressor(small_net, epochs=4, batch_size=16, lr=0.01, random_state=7).fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    # by hand: the factory under manual_seed(7), fit() on (y - mean) / std, predictions scaled back
    with torch.random.fork_rng():
        torch.manual_seed(7)
        net = small_net(5)
    x = torch.tensor(X, dtype=torch.float32)
    t = torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32)
    config = TrainConfig(epochs=4, batch_size=16, optimizer="adamw", lr=0.01, weight_decay=0.1,
                         schedule="cosine", loss="mse", seed=7)  # fmt: skip
    fit(net, Data(Split(x, t), Split(x[:0], t[:0])), config)
    net.eval()
    with torch.no_grad():
        expected = net(x).numpy()[:, 0].astype(np.float64) * y.std() + y.mean()
    np.testing.assert_allclose(reg.predict(X), expected, rtol=1e-6)
    # a scikit-learn estimator: clone copies it, set_params re-validates
    copy = clone(TorchRegressor(small_net, lr=0.003))
    assert copy.get_params()["lr"] == 0.003 and copy.get_params()["module"] is small_net
    assert "lr=0.003" in repr(copy)
    with pytest.raises(ConfigError, match="lr"):
        copy.set_params(lr=-1.0)


def test_cv_is_callable_as_the_module_and_the_module_keeps_its_functions(houses):
    train, _ = houses
    assert mlplab.house.cv is cv and cv.cross_validate is cross_validate  # the module, callable
    study = mlplab.house.cv(Ridge(), train, compare=("ridge",), folds=2)
    assert study.names == ("Ridge", "ridge")


# --------------------------------------------------------------------------------------------
# Paired comparisons over shuffles
# --------------------------------------------------------------------------------------------


def test_study_pairs_every_fold_of_every_shuffle(houses):
    train, _ = houses
    study = cv(Ridge(alpha=5.0), train, compare=("baseline", "ridge"), folds=3, shuffles=2, seed=4)
    assert study.seeds == (4, 5) and study.references() == ("baseline",)
    runs = [cross_validate(train, [as_model(Ridge(alpha=5.0)), "baseline", "ridge"], 3, s) for s in (4, 5)]
    mine = np.array([r["Ridge"].fold_scores for r in runs])  # (2 shuffles, 3 folds)
    base = np.array([r["baseline"].fold_scores for r in runs])
    np.testing.assert_allclose(study.fold_scores("Ridge"), mine, rtol=1e-12)
    assert study.mean("Ridge") == pytest.approx(mine.mean()) and study.worst("Ridge") == pytest.approx(
        mine.mean(axis=1).max()
    )
    reference = paired(dict(enumerate(mine.ravel())), dict(enumerate(base.ravel())), higher_is_better=False)
    got = study.versus("Ridge", "baseline")
    assert got.difference.n == 6
    assert got.difference.mean == pytest.approx(reference.difference.mean)
    assert got.difference.half_width == pytest.approx(reference.difference.half_width)
    table = study.table()
    assert list(table["model"]) == ["Ridge", "baseline", "ridge"]
    assert table.loc[0, "minus_baseline"] == pytest.approx(reference.difference.mean)
    assert math.isnan(table.loc[1, "minus_baseline"])  # the baseline against itself
    assert "paired over the 6 folds of 2 shuffles" in study.sentence("Ridge", "baseline")
    assert "<table" in study._repr_html_()


# --------------------------------------------------------------------------------------------
# No leakage into user code
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [Ridge(alpha=10.0), QUICK_TORCH], ids=["sklearn", "torch"])
def test_no_fold_of_a_users_model_sees_its_own_validation_prices(houses, model):
    """The strict test of every model, extended to every fold: changing the prices of fold j's
    validation rows leaves fold j's predictions unchanged (and its score worse)."""
    train, _ = houses
    before = cross_validate(train, [as_model(model)], folds=3, seed=2)
    name = before.scores[0].name
    for j, (_, va) in enumerate(fold_indices(len(train), 3, 2)):
        changed = train.copy()
        changed.loc[va, TARGET] *= 50
        after = cross_validate(changed, [as_model(model)], folds=3, seed=2)
        np.testing.assert_allclose(after[name].oof_log[va], before[name].oof_log[va], rtol=1e-12, atol=0)
        assert after[name].fold_scores[j] > before[name].fold_scores[j]


class WithId:
    """A preprocessing that hands the ``Id`` through as column 0 (what a row-identity cheat needs)."""

    def fit(self, train: pd.DataFrame) -> WithId:
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        return np.column_stack([frame["Id"].to_numpy(float), frame["OverallQual"].to_numpy(float)])


class InstanceMemorizer:
    """Remembers the target of every house it was fitted on, by ``Id``, in the instance."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> InstanceMemorizer:
        self.memory = dict(zip(X[:, 0], y))
        self.fallback = float(np.mean(y))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.array([self.memory.get(i, self.fallback) for i in X[:, 0]])


class ClassMemorizer(InstanceMemorizer):
    """The same, in a class attribute that every instance shares: it remembers across folds."""

    memory: dict = {}  # shared by every instance, on purpose: this is the cheat

    def fit(self, X: np.ndarray, y: np.ndarray) -> ClassMemorizer:
        ClassMemorizer.memory.update(zip(X[:, 0], y))
        self.fallback = float(np.mean(y))
        return self


def test_a_row_identity_memorizer_only_ever_gets_the_training_mean(houses):
    train, _ = houses
    report = cross_validate(train, [as_model(InstanceMemorizer(), preprocess=WithId())], folds=3, seed=1)
    for tr, va in fold_indices(len(train), 3, 1):
        kept = OutlierRule().keep(train.iloc[tr])
        np.testing.assert_allclose(report.scores[0].oof_log[va], log_price(np.full(len(va), log_target(kept).mean())))


def test_a_model_that_remembers_houses_across_folds_is_refused(houses, tmp_path):
    train, _ = houses
    ClassMemorizer.memory.clear()
    with pytest.raises(OwnModelError, match=r"ClassMemorizer remembers houses between fits.*module global"):
        cross_validate(train, [as_model(ClassMemorizer(), preprocess=WithId())], folds=3, seed=1)
    # the same with a module global, given as path.py:NAME
    path = write_module(
        tmp_path,
        "cheat",
        """
        import numpy as np
        MEMORY = {}

        class Model:
            def fit(self, X, y):
                MEMORY.update(zip(X[:, 0], y))
                self.fallback = float(np.mean(y))

            def predict(self, X):
                return np.array([MEMORY.get(i, self.fallback) for i in X[:, 0]])

        class Ids:
            def fit(self, train):
                pass

            def transform(self, frame):
                return frame[["Id", "OverallQual"]].to_numpy(float)
        """,
    )
    with pytest.raises(OwnModelError, match="remembers houses between fits"):
        cv(f"{path}:Model", train, preprocess=f"{path}:Ids", compare=(), folds=3)
    assert MEMORY_FACTOR < 1


def numeric_arrays(obj: object) -> list[np.ndarray]:
    """Every numeric array reachable from ``obj`` as a cheat would look: its values, each column,
    the frame's internal blocks and, for each array, the chain of buffers it is a view of."""
    found: list[np.ndarray] = []
    if isinstance(obj, pd.DataFrame):
        candidates = [obj.to_numpy()] + [np.asarray(obj[c]) for c in obj.columns]
        candidates += [np.asarray(b.values) for b in getattr(getattr(obj, "_mgr", None), "blocks", ())]
    else:
        candidates = [np.asarray(obj)]
    for array in candidates:
        while isinstance(array, np.ndarray):
            if array.dtype.kind in "fiu":
                found.append(array)
            array = array.base
    return found


def test_nothing_handed_to_user_code_holds_a_validation_price(houses):
    train, test = houses
    folds = fold_indices(len(train), 3, 0)
    train = train.assign(**{TARGET: 150_000.0 + 13.0 * np.arange(len(train))})  # unique: found = leaked
    seen: list[tuple[str, object]] = []

    class SpyPreprocess:
        def fit(self, frame):
            seen.append(("fit", frame))
            self.inner = HousePreprocessor(FeatureConfig()).fit(frame)

        def transform(self, frame):
            seen.append(("transform", frame))
            return self.inner.transform(frame)

    class SpyRegressor:
        def fit(self, X, y):
            seen.append(("regressor.fit", (X, y)))
            self.inner = Ridge(alpha=1.0).fit(X, y)

        def predict(self, X):
            seen.append(("regressor.predict", X))
            return self.inner.predict(X)

    report = cross_validate(train, [as_model(SpyRegressor, preprocess=SpyPreprocess)], folds=3, seed=0)
    assert np.isfinite(report.scores[0].fold_scores).all()
    calls_per_fit = 5  # preprocess fit, 2 transforms, regressor fit and predict
    assert len(seen) == calls_per_fit * 4  # 3 folds and the memory check's refit of fold 0
    for k, (tr, va) in enumerate([*folds, folds[0]]):
        calls = seen[k * calls_per_fit : (k + 1) * calls_per_fit]
        assert [what for what, _ in calls] == ["fit", "transform", "transform", "regressor.fit", "regressor.predict"]
        fit_frame, train_frame, val_frame = (frame for _, frame in calls[:3])
        kept = OutlierRule().keep(train.iloc[tr])
        assert fit_frame["Id"].tolist() == train_frame["Id"].tolist() == kept["Id"].tolist()  # training rows only
        assert TARGET in fit_frame and TARGET not in train_frame and TARGET not in val_frame
        assert val_frame["Id"].tolist() == train["Id"].iloc[va].tolist()
        prices = train[TARGET].to_numpy()[va]
        forbidden = np.concatenate([prices, np.log(prices), np.log1p(prices)])
        for what, obj in calls:
            for part in obj if isinstance(obj, tuple) else (obj,):
                for array in numeric_arrays(part):
                    assert not np.isin(forbidden, array).any(), f"{what} can reach a validation price"


# --------------------------------------------------------------------------------------------
# Errors for bad user objects: the thing, the value and the fix
# --------------------------------------------------------------------------------------------


class NoPredict:
    def fit(self, X, y):
        return self


class Predicts:
    """A regressor whose predict returns ``out(m)``."""

    def __init__(self, out=None) -> None:
        self.out = out

    def fit(self, X, y):
        return self

    def predict(self, X):
        return self.out(len(X))


def nan_at_3(m: int) -> np.ndarray:
    z = np.full(m, 12.0)
    z[3] = np.nan
    return z


@pytest.mark.parametrize(
    ("model", "error", "message"),
    [
        (
            object(),
            ConfigError,
            r"model = 'object object' is invalid: it has neither fit nor predict.*expected a "
            r"scikit-learn-style regressor \(fit\(X, y\) and predict\(X\)\)",
        ),
        (NoPredict(), ConfigError, "has no predict method: a regressor needs fit"),
        (NoPredict, ConfigError, "the class NoPredict has no predict"),
        (nn.Linear(3, 1), ConfigError, "nn.Module instance .*pass a factory instead"),
        (lambda a, b: None, ConfigError, "takes 2 arguments: a factory takes n_features"),
        (lambda: 3, ConfigError, "calling it returned 3, which has no fit or predict"),
        (
            Predicts(lambda m: np.zeros((m, 3))),
            OwnModelError,
            r"predict\(X\) returned shape \(40, 3\) for X of 40 rows: "
            r"expected \(40,\) or \(40, 1\).*Fix",
        ),
        (Predicts(nan_at_3), OwnModelError, r"returned 1 NaN or infinite value\(s\) of 40 \(first at row 3\)"),
        (
            Predicts(lambda m: np.full(m, 180_000.0)),
            OwnModelError,
            "180,000, far from any log1p.*not the price in dollars",
        ),
        (Predicts(lambda m: ["cheap"] * m), OwnModelError, "returned a list, not numbers"),
        (
            TorchRegressor(lambda n: nn.Linear(n, 3)),
            ConfigError,
            r"output shape = \(2, 3\) is invalid.*nn.Linear\(..., 1\)",
        ),
        (TorchRegressor(lambda n: Ridge()), ConfigError, "must return an nn.Module .*got a Ridge"),
    ],
    ids=[
        "object",
        "no-predict",
        "class-no-predict",
        "module-instance",
        "two-args",
        "returns-int",
        "shape",
        "nan",
        "dollars",
        "text",
        "torch-shape",
        "torch-not-module",
    ],
)
def test_bad_user_models_get_errors_that_name_the_problem(houses, model, error, message):
    train, _ = houses
    with pytest.raises(error, match=message):
        cv(model, train, compare=(), folds=3)


def test_an_exception_in_user_code_names_the_model_the_call_and_the_line(houses):
    train, _ = houses

    class Broken:
        def fit(self, X, y):
            raise ValueError("I am not finished")

        def predict(self, X):
            return X[:, 0]

    message = (
        r"Broken: fit\(ndarray of shape \(\d+, \d+\), ndarray of shape \(\d+,\)\) raised ValueError: "
        r"I am not finished \(at test_house_user_models.py, line \d+, in fit\)"
    )
    with pytest.raises(OwnModelError, match=message):
        cv(Broken, train, compare=(), folds=2)


def test_diverged_training_names_the_learning_rate(houses):
    class Exploding(nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.lin = nn.Linear(n, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x) * 1e30

    with pytest.raises(
        ConfigError, match=r"lr = 0.001 is invalid: training Exploding.*'diverged'.*smaller learning rate"
    ):
        cv(TorchRegressor(Exploding, epochs=2), houses[0], compare=(), folds=2)


@pytest.mark.parametrize(
    ("preprocess", "message"),
    [
        (Ridge(), "it has no transform method: a preprocessing needs fit"),
        (lambda: Ridge(), "what it builds has no transform"),
    ],
)
def test_bad_preprocessing_objects_are_refused_up_front(preprocess, message):
    with pytest.raises(ConfigError, match=f"preprocess = .* is invalid: {message}"):
        as_model(Ridge(), preprocess=preprocess)


class Transform:
    """A preprocessing whose transform returns ``out(frame, fitted_rows)``."""

    def __init__(self, out=None) -> None:
        self.out = out

    def fit(self, train):
        self.rows = len(train)

    def transform(self, frame):
        return self.out(frame, self.rows)


@pytest.mark.parametrize(
    ("out", "message"),
    [
        (lambda f, n: np.zeros((len(f) + 1, 2)), r"shape \(\d+, 2\) for \d+ houses: expected \(\d+, d\)"),
        (
            lambda f, n: np.zeros((len(f), 2 if len(f) == n else 3)),
            r"shape \(40, 3\) .*expected \(40, 2\).*as many columns",
        ),
        (lambda f, n: f[["LotFrontage"]], r"\d+ NaN or infinite value\(s\).*Fix: fill missing values"),
        (lambda f, n: f[["Neighborhood"]], "a DataFrame that is not numeric"),
    ],
    ids=["rows", "columns", "nan", "text"],
)
def test_bad_preprocessing_output_is_named(houses, out, message):
    with pytest.raises(
        OwnModelError, match=r"Ridge's preprocessing Transform object: transform\(frame\) returned " + message
    ):
        cv(Ridge(), houses[0], preprocess=Transform(out), compare=(), folds=3)


def test_module_name_specs_resolve_files_and_modules_or_say_why_not(tmp_path, monkeypatch):
    path = write_module(tmp_path, "my_house", "from sklearn.linear_model import Ridge\nridge = Ridge(alpha=3.0)\n")
    assert resolve(f"{path}:ridge").alpha == 3.0
    assert resolve("sklearn.linear_model:Ridge") is Ridge
    monkeypatch.chdir(tmp_path)  # an importable module in the current folder, as `python -m` finds it
    try:
        assert resolve("my_house:ridge").alpha == 3.0
    finally:
        sys.modules.pop("my_house", None)  # imported by name: not to be found by other tests
    assert as_model("my_house.py:ridge").name == "ridge (own)"  # a registered name is not taken
    write_module(tmp_path, "broken", "import numpy\n\nraise RuntimeError('half written')\n")
    cases = [
        ("my_house", ConfigError, r"model = 'my_house' is invalid: one of baseline.*or your own model as MODULE:NAME"),
        ("my_house.py", ConfigError, r"or your own model as MODULE:NAME"),
        ("nowhere.py:ridge", ConfigError, r"there is no file nowhere.py"),
        ("no_such_module:ridge", ConfigError, r"no module named 'no_such_module'.*path/to/no_such_module.py:ridge"),
        ("my_house.py:rigde", ConfigError, r"my_house.py has no 'rigde'; it defines Ridge, ridge"),
        ("broken.py:x", OwnModelError, r"importing broken.py .*RuntimeError: half written \(at broken.py, line 3"),
    ]
    for spec, error, message in cases:
        with pytest.raises(error, match=message):
            as_model(spec)
    with pytest.raises(ConfigError, match="preprocess .* is for your own model"):
        as_model("ridge", preprocess="my_house.py:ridge")
    with pytest.raises(ConfigError, match="name = 'mlp' is invalid"):
        as_model(Ridge(), name="mlp")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

MODEL_FILE = """
from torch import nn
from sklearn.linear_model import Ridge
from mlplab.house import TorchRegressor

ridge = Ridge(alpha=20.0)


def mlp(n_features):
    return nn.Sequential(nn.Linear(n_features, 8), nn.ReLU(), nn.Linear(8, 1))


quick = TorchRegressor(mlp, epochs=3)
"""


def test_cli_cv_takes_a_users_model_and_pairs_it_with_the_references(tmp_path):
    folder = write_csvs(tmp_path / "hp", n_train=90)
    path = write_module(tmp_path, "my_house", MODEL_FILE)
    args = ["cv", "--model", f"{path}:ridge", "--models", "baseline,ridge", "--folds", "3", "--shuffles", "2"]
    result = CliRunner().invoke(house_app, [*args, "--data-dir", str(folder), "--no-verify"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "3-fold shuffled CV (shuffles 0-1), 90 houses" in result.output
    assert "- baseline" in result.output and "worst shuffle" in result.output
    row = next(line for line in result.output.splitlines() if "ridge (own)" in line)
    assert "yours:" in row and "±" in row
    assert "paired over the 6 folds of 2 shuffles" in result.output


def test_cli_submit_writes_a_users_networks_predictions(tmp_path):
    folder = write_csvs(tmp_path / "hp")
    path = write_module(tmp_path, "my_house", MODEL_FILE)
    out = tmp_path / "sub.csv"
    result = CliRunner().invoke(
        house_app, ["submit", "--model", f"{path}:quick", "--out", str(out), "--data-dir", str(folder), "--no-verify"]
    )
    assert result.exit_code == 0, result.output
    assert "predictions by quick" in result.output
    sub = pd.read_csv(out)
    assert sub["Id"].tolist() == list(range(61, 81)) and (sub["SalePrice"] > 0).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cv", "--model", "mlp"], "--model = 'mlp' is invalid: expected MODULE:NAME"),
        (["cv", "--model", "nope_module:x"], "no module named 'nope_module'"),
        (["cv", "--preprocess", "a.py:b"], "--preprocess = 'a.py:b' is invalid: it preprocesses your --model"),
        (["cv", "--shuffles", "0"], "--shuffles = 0"),
        (["submit", "--model", "nowhere.py:mlp"], "there is no file nowhere.py"),
    ],
)
def test_cli_user_model_errors_are_one_line_before_any_loading(tmp_path, args, message):
    result = CliRunner().invoke(house_app, [*args, "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_the_docs_first_own_mlp_runs(houses, tmp_path):
    """The walk-through's ``my_house.py`` (docs/house.md), as written there."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "house.md").read_text()
    block = docs.split("say `my_house.py`:\n\n```python\n", 1)[1].split("```", 1)[0]
    path = write_module(tmp_path, "my_house", block)
    study = cv(f"{path}:mlp", houses[0], compare=("ridge",), folds=2)
    assert study.names == ("mlp (own)", "ridge") and np.isfinite(study.fold_scores("mlp (own)")).all()


# --------------------------------------------------------------------------------------------
# Real data (only with MLPLAB_DATA)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def real_data(monkeypatch):
    if not REAL_DATA:
        pytest.skip("set MLPLAB_DATA to the folder holding house-prices/ for real-data tests")
    monkeypatch.setenv(sources.ENV_VAR, REAL_DATA)
    return load(download=False)


def test_real_data_a_users_ridge_is_the_registered_ridge_and_submits(real_data, tmp_path):
    study = cv(Ridge(alpha=200.0), real_data.train, compare=("ridge", "baseline"), folds=5)
    # the registered ridge is Ridge(alpha=200) on the mlp member's features: the same footing
    np.testing.assert_allclose(study.fold_scores("Ridge"), study.fold_scores("ridge"), rtol=1e-9)
    assert study.versus("Ridge", "baseline").winner == "Ridge"  # 0.122 against 0.171
    path = write_module(tmp_path, "my_house", MODEL_FILE)
    out = tmp_path / "submission.csv"
    result = CliRunner().invoke(house_app, ["submit", "--model", f"{path}:ridge", "--out", str(out)])
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(out)
    assert len(sub) == 1459 and 100_000 < sub["SalePrice"].median() < 250_000
