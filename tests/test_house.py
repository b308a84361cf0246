"""Tests of mlplab.house: schema errors, leak-freedom, the book's baseline, submission, CLI.

Unit tests use small generated tables in the Kaggle schema; the real-data smoke tests run only
when ``MLPLAB_DATA`` points at the folder holding ``house-prices/``.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from mlplab.cli import app
from mlplab.cli.house import app as house_app
from mlplab.data import sources
from mlplab.errors import ConfigError, DataError
from mlplab.house import (
    BookConfig,
    BookPreprocessor,
    FeatureConfig,
    HousePreprocessor,
    MLPConfig,
    MLPRegressor,
    OutlierRule,
    book_log_rmse,
    book_protocol_cv,
    check_schema,
    cross_validate,
    fit_predict,
    load,
    submission_frame,
    write_submission,
)
from mlplab.house import data as house_data
from mlplab.house import models as house_models
from mlplab.house.baseline import book_folds, train_linear
from mlplab.house.data import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, NUMERIC_COLUMNS
from mlplab.house.folds import fold_indices, fold_seed
from mlplab.house.models import (
    MODELS,
    Ensemble,
    GBMConfig,
    LassoConfig,
    MLPBuild,
    Pipeline,
    RidgeConfig,
    SVRConfig,
    stack_weights,
)

torch.set_num_threads(1)  # tiny tensors: one thread is as fast and immune to a busy core

# Read at import: a conftest may clear the variable for every test to isolate the data search.
REAL_DATA = os.environ.get(sources.ENV_VAR)

# Small, fast variants of the registered models (same code paths, fewer iterations).
TINY_MLP = MLPConfig(hidden=16, members=2, epochs=40)
TINY_GBM = GBMConfig(n_estimators=30)


def register_tiny_models(monkeypatch) -> None:
    """Register tiny ``mlp`` and ``gbm``, and ``best`` and ``stack`` rebuilt over them."""
    tiny = {
        model.name: model
        for model in (Pipeline("mlp", MLPBuild(TINY_MLP), FeatureConfig()), Pipeline("gbm", TINY_GBM, FeatureConfig()))
    }
    for name in ("best", "stack"):
        members = tuple(tiny.get(m.name, m) for m in MODELS[name].members)
        tiny[name] = replace(MODELS[name], members=members)
    for name, model in tiny.items():
        monkeypatch.setitem(MODELS, name, model)


# --------------------------------------------------------------------------------------------
# A generated table in the Kaggle schema
# --------------------------------------------------------------------------------------------

_LEVELS = {col: [f"{col[:3]}{i}" for i in range(4)] for col in CATEGORICAL_COLUMNS}
_LEVELS.update(
    Neighborhood=["NAmes", "Edwards", "OldTown", "CollgCr", "Gilbert"],
    ExterQual=["Ex", "Gd", "TA", "Fa"],
    KitchenQual=["Ex", "Gd", "TA", "Fa"],
    BsmtQual=["Ex", "Gd", "TA", "Fa"],
    GarageFinish=["Fin", "RFn", "Unf"],
    SaleCondition=["Normal", "Partial", "Abnorml"],
    CentralAir=["Y", "N"],
)


def make_houses(n: int, seed: int = 0, with_price: bool = True, first_id: int = 1) -> pd.DataFrame:
    """``n`` fake houses with every Kaggle column, some missing values, and a price that
    depends on a few features (so that models have something to learn)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {"Id": np.arange(first_id, first_id + n)}
    for col in FEATURE_COLUMNS:
        if col in NUMERIC_COLUMNS:
            values = rng.gamma(2.0, 300.0, n).round()
            if col in ("OverallQual", "OverallCond"):
                values = rng.integers(1, 11, n).astype(float)
            elif col in ("YearBuilt", "YearRemodAdd", "GarageYrBlt"):
                values = rng.integers(1900, 2010, n).astype(float)
            elif col == "YrSold":
                values = rng.integers(2006, 2011, n).astype(float)
            elif col == "MoSold":
                values = rng.integers(1, 13, n).astype(float)
            elif col == "MSSubClass":
                values = rng.choice([20.0, 60.0, 120.0], n)
            if col in ("LotFrontage", "MasVnrArea", "GarageYrBlt"):
                values[rng.random(n) < 0.1] = np.nan
            cols[col] = values
        else:
            values = rng.choice(_LEVELS[col], n).astype(object)
            values[rng.random(n) < 0.1] = np.nan
            cols[col] = values
    frame = pd.DataFrame(cols)
    if with_price:
        signal = 0.1 * frame["OverallQual"] + 0.0003 * frame["GrLivArea"] + 0.2 * (frame["Neighborhood"] == "Edwards")
        frame["SalePrice"] = np.round(np.exp(11.0 + signal + rng.normal(0, 0.1, n)))
    return frame


@pytest.fixture(scope="module")
def houses() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A checked (train, test) pair: 160 training and 40 test houses."""
    train = check_schema(make_houses(160, seed=1), "train")
    test = check_schema(make_houses(40, seed=2, with_price=False, first_id=161), "test")
    return train, test


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory, monkeypatch):
    """No test sees the user's cache or $MLPLAB_DATA, and no test reaches the network."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setattr(sources, "cache_dir", lambda: cache)
    monkeypatch.delenv(sources.ENV_VAR, raising=False)
    for kind, known in house_data.FILES.items():
        monkeypatch.setitem(house_data.FILES, kind, replace(known, url="file:///nonexistent/x.csv"))
    return cache


def write_csvs(folder: Path, names=("train.csv", "test.csv"), n_train=60, n_test=20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    make_houses(n_train, seed=3).to_csv(folder / names[0], index=False)
    make_houses(n_test, seed=4, with_price=False, first_id=n_train + 1).to_csv(folder / names[1], index=False)
    return folder


# --------------------------------------------------------------------------------------------
# Schema checks
# --------------------------------------------------------------------------------------------


def test_check_schema_accepts_and_normalizes_a_kaggle_table():
    raw = make_houses(30).assign(Extra=1)
    checked = check_schema(raw, "train")
    assert list(checked.columns) == ["Id", *FEATURE_COLUMNS, "SalePrice"]  # extra column dropped
    assert checked["SalePrice"].dtype == np.float64
    assert all(checked[c].dtype == object for c in CATEGORICAL_COLUMNS)
    assert checked["Alley"].isna().sum() == raw["Alley"].isna().sum()


@pytest.mark.parametrize("column", ["GrLivArea", "Neighborhood", "Id"])
def test_missing_column_is_named(column):
    with pytest.raises(DataError, match=column):
        check_schema(make_houses(10).drop(columns=column), "train")


def test_train_without_price_says_so():
    with pytest.raises(DataError, match="SalePrice.*test table"):
        check_schema(make_houses(10, with_price=False), "train")


def test_non_numeric_price_is_reported_with_the_value():
    frame = make_houses(10)
    frame["SalePrice"] = frame["SalePrice"].astype(object)
    frame.loc[3, "SalePrice"] = "cheap"
    with pytest.raises(DataError, match=r"SalePrice must be numeric.*'cheap'"):
        check_schema(frame, "train")


@pytest.mark.parametrize("bad", [0.0, -5.0, np.nan, np.inf])
def test_non_positive_or_missing_price_names_the_row(bad):
    frame = make_houses(10)
    frame.loc[4, "SalePrice"] = bad
    with pytest.raises(DataError, match=r"positive.*Id 5"):
        check_schema(frame, "train")


def test_text_in_a_numeric_feature_is_reported():
    frame = make_houses(10)
    frame["LotArea"] = frame["LotArea"].astype(object)
    frame.loc[0, "LotArea"] = "big"
    with pytest.raises(DataError, match=r"LotArea must be numeric.*'big'"):
        check_schema(frame, "test")


def test_duplicate_ids_empty_tables_and_non_frames_are_rejected():
    frame = make_houses(10)
    frame.loc[1, "Id"] = frame.loc[0, "Id"]
    with pytest.raises(DataError, match="unique"):
        check_schema(frame, "train")
    with pytest.raises(DataError, match="no rows"):
        check_schema(make_houses(5).iloc[:0], "train")
    with pytest.raises(DataError, match="DataFrame"):
        check_schema(make_houses(5).to_numpy(), "train")


def test_fit_predict_checks_its_inputs(houses):
    train, test = houses
    with pytest.raises(DataError, match="train_df.*SalePrice"):
        fit_predict(test, test, model="ridge")
    with pytest.raises(ConfigError, match="model = 'xgboost'.*baseline.*mlp.*best"):
        fit_predict(train, test, model="xgboost")


# --------------------------------------------------------------------------------------------
# Loading: file names, checksums, search order, download
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [("train.csv", "test.csv"), ("kaggle_house_pred_train.csv", "kaggle_house_pred_test.csv")],
)
def test_load_accepts_both_namings_without_verification(tmp_path, names):
    folder = write_csvs(tmp_path / "hp", names)
    data = load(folder, verify=False, download=False)
    assert data.train.shape == (60, 81) and data.test.shape == (20, 80)
    assert data.train_path.name == names[0]


def test_load_rejects_a_file_with_another_checksum(tmp_path):
    folder = write_csvs(tmp_path / "hp")
    with pytest.raises(DataError, match=r"SHA-256.*expected 1e18addf.*--no-verify"):
        load(folder, download=False)


def test_load_without_files_lists_the_places_searched(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(DataError, match=r"(?s)\$MLPLAB_DATA.*user cache.*Fix: pass --data-dir"):
        load(None, download=False)
    # an explicit --data-dir is the only place searched: a missing file there is an error
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no train file .* in --data-dir .*empty \(only that folder"):
        load(tmp_path / "empty", download=False)


def test_data_dir_comes_before_mlplab_data(tmp_path, monkeypatch):
    write_csvs(tmp_path / "env" / "house-prices", n_train=30)
    first = write_csvs(tmp_path / "mine", n_train=40)
    monkeypatch.setenv(sources.ENV_VAR, str(tmp_path / "env"))
    assert len(load(first, verify=False, download=False).train) == 40
    assert len(load(None, verify=False, download=False).train) == 30


def test_download_is_verified_and_lands_in_the_cache(tmp_path, isolated, monkeypatch):
    book_names = ("kaggle_house_pred_train.csv", "kaggle_house_pred_test.csv")
    mirror = write_csvs(tmp_path / "mirror", book_names)
    for kind in ("train", "test"):
        path = mirror / f"kaggle_house_pred_{kind}.csv"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        known = replace(house_data.FILES[kind], url=path.as_uri(), sha256=digest)
        monkeypatch.setitem(house_data.FILES, kind, known)
    data = load()
    assert data.train_path == isolated / "house-prices" / "kaggle_house_pred_train.csv"
    assert len(data.train) == 60 and len(data.test) == 20
    # a mirror serving other bytes: the download fails and nothing is left under the real name
    data.train_path.unlink()
    data.test_path.unlink()
    monkeypatch.setitem(house_data.FILES, "train", replace(house_data.FILES["train"], sha256="0" * 64))
    with pytest.raises(DataError, match="expected 0000"):
        load()
    assert not list((isolated / "house-prices").glob("*train*"))


# --------------------------------------------------------------------------------------------
# The book's baseline
# --------------------------------------------------------------------------------------------


def book_pandas_features(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """The book's preprocessing, written as the book writes it (dtype-based column choice)."""
    all_features = pd.concat((train.iloc[:, 1:-1], test.iloc[:, 1:]))
    numeric = all_features.dtypes[all_features.dtypes.map(pd.api.types.is_numeric_dtype)].index
    all_features[numeric] = all_features[numeric].apply(lambda x: (x - x.mean()) / (x.std()))
    all_features[numeric] = all_features[numeric].fillna(0)
    return pd.get_dummies(all_features, dummy_na=True).astype(float)


def test_book_preprocessing_matches_the_books_pandas_code():
    train, test = make_houses(50, seed=5), make_houses(30, seed=6, with_price=False, first_id=51)
    train.loc[0, "Street"] = "OnlyInTrain"
    test.loc[0, "Street"] = "OnlyInTest"  # the book encodes test-only categories too
    expected = book_pandas_features(train, test)
    both = pd.concat([check_schema(train, "train"), check_schema(test, "test")], ignore_index=True)
    pre = BookPreprocessor().fit(both)
    got = pd.DataFrame(pre.transform(both), columns=pre.feature_names_)
    assert sorted(got.columns) == sorted(expected.columns)
    np.testing.assert_allclose(got[expected.columns].to_numpy(), expected.to_numpy(), atol=1e-12)


def test_book_log_rmse_matches_a_hand_computation():
    pred = np.array([0.5, 100.0, 200.0, 50.0])  # 0.5 is clamped to 1
    price = np.array([1.0, 100.0, 100.0, 100.0])
    by_hand = math.sqrt((0.0 + 0.0 + math.log(2) ** 2 + math.log(0.5) ** 2) / 4)
    assert book_log_rmse(pred, price) == pytest.approx(by_hand, rel=1e-12)
    assert book_log_rmse(pred.reshape(-1, 1), price) == pytest.approx(by_hand, rel=1e-12)


def test_batched_linear_training_equals_torch_adam_on_nn_linear():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(70, 6, generator=gen)
    y = X @ torch.arange(1.0, 7.0) + 3.0 + 0.1 * torch.randn(70, generator=gen)
    config = BookConfig(lr=0.05, weight_decay=0.01, batch_size=16, epochs=5)
    weight, bias = train_linear(X[None], y[None], config, torch.Generator().manual_seed(7))

    ref_gen = torch.Generator().manual_seed(7)  # same draws: init, then one permutation per epoch
    net = torch.nn.Linear(6, 1)
    with torch.no_grad():
        net.weight.copy_(torch.empty(1, 6).uniform_(-(6**-0.5), 6**-0.5, generator=ref_gen))
        net.bias.copy_(torch.empty(1).uniform_(-(6**-0.5), 6**-0.5, generator=ref_gen))
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    for _ in range(config.epochs):
        for idx in torch.randperm(70, generator=ref_gen).split(config.batch_size):
            loss = torch.nn.MSELoss()(net(X[idx]), y[idx].reshape(-1, 1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.testing.assert_close(weight[0], net.weight.detach()[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bias, net.bias.detach(), rtol=1e-4, atol=1e-5)


def test_book_folds_are_the_books_contiguous_slices():
    n, k = 23, 5
    train, val = book_folds(n, k)
    size = n // k
    for i in range(k):  # d2l's get_k_fold_data, written out
        expected_val = list(range(i * size, (i + 1) * size))
        expected_train = [r for j in range(k) if j != i for r in range(j * size, (j + 1) * size)]
        assert val[i].tolist() == expected_val
        assert train[i].tolist() == expected_train


def test_book_protocol_and_baseline_model_run(houses):
    train, test = houses
    result = book_protocol_cv(train, test, k=4, config=BookConfig(epochs=3))
    assert len(result.val_scores) == 4 and all(np.isfinite(result.val_scores))
    prices = fit_predict(train, test, model="baseline")
    assert prices.shape == (len(test),) and (prices >= 1).all()
    with pytest.raises(ConfigError, match="batch_size"):
        BookConfig(batch_size=0)


# --------------------------------------------------------------------------------------------
# No leakage: every statistic from training rows only
# --------------------------------------------------------------------------------------------


def drastic(frame: pd.DataFrame, rows) -> pd.DataFrame:
    """``frame`` with ``rows`` changed beyond recognition (huge areas, new or missing text)."""
    out = frame.copy()
    out.loc[rows, "GrLivArea"] = 1e7
    out.loc[rows, "LotArea"] = 1e9
    out.loc[rows, "LotFrontage"] = np.nan
    out.loc[rows, "Neighborhood"] = "Atlantis"
    out.loc[rows, "KitchenQual"] = np.nan
    if "SalePrice" in out:
        out.loc[rows, "SalePrice"] = 1.0
    return out


def test_preprocessor_statistics_come_from_training_rows_only(houses):
    train, _ = houses
    fold_train, fold_val = train.iloc[:120], train.iloc[120:]
    config = FeatureConfig(squares=True, interactions=True, clip_to_train_range=True, clip_quantile=0.01)
    pre = HousePreprocessor(config).fit(fold_train)
    before = pre.transform(fold_train)
    # the same training rows next to drastically changed validation rows
    changed = drastic(train, train.index[120:])
    pre2 = HousePreprocessor(config).fit(changed.iloc[:120])
    np.testing.assert_array_equal(pre2.transform(changed.iloc[:120]), before)
    np.testing.assert_array_equal(pre2.mean_, pre.mean_)
    assert pre2.categories_ == pre.categories_ and pre2.log_columns_ == pre.log_columns_
    # independent references, computed from the training rows by hand
    assert "Neighborhood_Atlantis" not in pre2.feature_names_
    hood_median = fold_train.groupby("Neighborhood")["LotFrontage"].median()
    assert pre.lot_frontage_by_hood_.to_dict() == pytest.approx(hood_median.dropna().to_dict())
    plain = HousePreprocessor(replace(config, clip_to_train_range=False)).fit(fold_train)
    scaled = plain.transform(fold_train)
    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=1e-9)  # training mean and std
    np.testing.assert_allclose(scaled.std(axis=0)[scaled.std(axis=0) > 0], 1.0, rtol=1e-9)
    # an unseen category encodes as zeros (before scaling) in its one-hot block
    block = [i for i, f in enumerate(plain.feature_names_) if f.startswith("Neighborhood_")]
    unseen = plain.transform(drastic(fold_val, fold_val.index))
    zeros = (0.0 - plain.mean_[block]) / plain.scale_[block]
    np.testing.assert_allclose(unseen[:, block], np.broadcast_to(zeros, unseen[:, block].shape))
    assert np.isfinite(pre.transform(drastic(fold_val, fold_val.index))).all()


@pytest.mark.parametrize(
    "model",
    [
        Pipeline("t-ridge", RidgeConfig(), FeatureConfig(squares=True, clip_to_train_range=True)),
        Pipeline("t-lasso", LassoConfig(alpha=0.01), FeatureConfig(min_category_count=3)),
        Pipeline("t-svr", SVRConfig()),
        Pipeline("t-gbm", TINY_GBM),
        Pipeline("t-mlp", MLPBuild(TINY_MLP), FeatureConfig(clip_quantile=0.01, clip_to_train_range=True)),
    ],
    ids=lambda m: m.name,
)
def test_predictions_do_not_depend_on_other_rows_to_predict(houses, model):
    assert_other_rows_to_predict_do_not_matter(model, *houses)


def assert_other_rows_to_predict_do_not_matter(model, train, test) -> None:
    """Changing test rows 0..9 drastically leaves the predictions of rows 10.. unchanged."""
    before = model.fit_predict_log(train, test, seed=3)
    changed = drastic(test, test.index[:10])  # rows 0..9 changed, rows 10.. untouched
    after = model.fit_predict_log(train, changed, seed=3)
    # equal up to rounding (a BLAS product may round a row differently in another batch)
    np.testing.assert_allclose(after[10:], before[10:], rtol=1e-12, atol=0)


def test_cross_validation_never_lets_a_row_see_its_own_price(houses, monkeypatch):
    train, _ = houses
    register_tiny_models(monkeypatch)
    names = ["ridge", "mlp", "gbm", "best", "stack"]  # "stack" fits its weights per fold
    report = cross_validate(train, names, folds=4, seed=5)
    _, val0 = fold_indices(len(train), 4, 5)[0]
    # change fold 0's prices (and only those): its own out-of-fold predictions must not move
    changed = train.copy()
    changed.loc[val0, "SalePrice"] = changed.loc[val0, "SalePrice"] * 50
    again = cross_validate(changed, names, folds=4, seed=5)
    for name in names:
        np.testing.assert_allclose(again[name].oof_log[val0], report[name].oof_log[val0], rtol=1e-12, atol=0)
        assert again[name].fold_scores[0] > report[name].fold_scores[0]  # and they are scored


def test_outlier_rule_drops_training_rows_only(houses):
    train, _ = houses
    train = train.copy()
    train.loc[:4, "GrLivArea"] = 5000.0
    train.loc[:4, "SalePrice"] = 100_000.0
    mask = OutlierRule().mask(train)
    assert mask.tolist() == [True] * 5 + [False] * (len(train) - 5)
    report = cross_validate(train, ["lasso"], folds=5, seed=0)
    y = np.log(train["SalePrice"].to_numpy())
    oof = report["lasso"].oof_log
    for score, (_, va) in zip(report["lasso"].fold_scores, fold_indices(len(train), 5, 0)):
        # every validation row, the outliers included, is scored with the book's metric
        assert score == pytest.approx(book_log_rmse(np.exp(oof[va]), np.exp(y[va])), rel=1e-9)
    assert report["lasso"].mean == pytest.approx(np.mean(report["lasso"].fold_scores))
    assert report["lasso"].std == pytest.approx(np.std(report["lasso"].fold_scores))


# --------------------------------------------------------------------------------------------
# Models and the public API
# --------------------------------------------------------------------------------------------


HOUSE_FOLDER = Path(house_models.__file__).parent
HOUSE_MODULES = sorted(p.stem for p in HOUSE_FOLDER.glob("[!_]*.py"))
# Imports mlplab.house.<argv[2]> with the package's __init__ (which imports every module, in its
# own order) replaced by an empty package over the same folder (argv[1]).
IMPORT_FIRST = """
import importlib, sys, types
package = types.ModuleType("mlplab.house")
package.__path__ = [sys.argv[1]]
sys.modules["mlplab.house"] = package
importlib.import_module("mlplab.house." + sys.argv[2])
"""


@pytest.mark.parametrize("module", [None, *HOUSE_MODULES])
def test_each_house_module_imports_first_in_a_fresh_interpreter(module):
    """An import cycle breaks when one of its modules is imported first, so each one is (and
    the package, ``None``, as users import it)."""
    import subprocess
    import sys

    if module is None:
        args = ["-c", "import mlplab.house"]
    else:
        args = ["-c", IMPORT_FIRST, str(HOUSE_FOLDER), module]
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_mlp_learns_a_nonlinear_function_and_is_seeded():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = np.abs(X[:, 0]) * 2 + X[:, 1] + 0.05 * rng.normal(size=300)
    config = MLPConfig(hidden=32, members=2, epochs=300, weight_decay=0.0, l1_linear=0.0, dropout=0.0)
    model = MLPRegressor(config, seed=1).fit(X[:200], y[:200])
    pred = model.predict(X[200:])
    linear = np.linalg.lstsq(np.c_[X[:200], np.ones(200)], y[:200], rcond=None)[0]
    linear_mse = np.mean((np.c_[X[200:], np.ones(100)] @ linear - y[200:]) ** 2)
    assert np.mean((pred - y[200:]) ** 2) < 0.3 * linear_mse  # |x0| needs the hidden layer
    again = MLPRegressor(config, seed=1).fit(X[:200], y[:200]).predict(X[200:])
    np.testing.assert_array_equal(pred, again)
    with pytest.raises(ConfigError, match="dropout"):
        MLPConfig(dropout=1.0)


def test_fit_predict_best_returns_one_price_per_test_row(houses, monkeypatch):
    train, test = houses
    register_tiny_models(monkeypatch)
    steps = []
    prices = fit_predict(train, test.assign(SalePrice=1.0), progress=lambda *a: steps.append(a))
    assert isinstance(prices, np.ndarray) and prices.shape == (len(test),)
    assert np.isfinite(prices).all() and (prices > 0).all()
    names = ["lasso", "svr", "svr_clip", "mlp", "gbm"]
    assert [s[2] for s in steps] == [f"fitting {name}" for name in names] + ["done"]
    # the ensemble is the weighted mean of its members in log space (gbm counts twice)
    logs = {m.name: np.log(fit_predict(train, test, model=m)) for m in MODELS["best"].members}
    weighted = (logs["lasso"] + logs["svr"] + logs["svr_clip"] + logs["mlp"] + 2 * logs["gbm"]) / 6
    np.testing.assert_allclose(np.log(prices), weighted, rtol=1e-12)
    members = [logs[m] for m in ("lasso", "svr", "gbm", "mlp")]
    # "stack" weighs the same members with weights fitted on the training rows
    steps.clear()
    stacked = fit_predict(train, test, model="stack", progress=lambda *a: steps.append(a))
    assert [s[2] for s in steps] == [
        "fitting stacking weights",
        "fitting lasso",
        "fitting svr",
        "fitting gbm",
        "fitting mlp",
        "done",
    ]
    assert [s[:2] for s in steps] == [(i, 5) for i in range(6)]
    weights = MODELS["stack"].fit_weights(train, seed=0)
    assert weights.shape == (4,) and (weights >= 0).all() and weights.sum() == pytest.approx(1)
    np.testing.assert_allclose(np.log(stacked), weights @ np.array(members), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Stacking
# --------------------------------------------------------------------------------------------


def brute_force_nnls(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares by trying every support: the best unconstrained least-squares
    fit on a subset of columns whose coefficients are all >= 0 (an independent reference)."""
    best, best_res = np.zeros(P.shape[1]), float(y @ y)
    for mask in range(1, 2 ** P.shape[1]):
        cols = [j for j in range(P.shape[1]) if mask >> j & 1]
        coef = np.linalg.lstsq(P[:, cols], y, rcond=None)[0]
        if (coef >= 0).all():
            w = np.zeros(P.shape[1])
            w[cols] = coef
            res = float(np.sum((P @ w - y) ** 2))
            if res < best_res - 1e-12:
                best, best_res = w, res
    return best


def test_stack_weights_are_normalized_non_negative_least_squares():
    rng = np.random.default_rng(0)
    truth = rng.normal(12.0, 0.4, 60)
    # members: two good ones with independent noise, one biased, one anti-correlated
    P = np.column_stack(
        [
            truth + rng.normal(0, 0.1, 60),
            truth + rng.normal(0, 0.2, 60),
            truth + 0.5,
            24.0 - truth + rng.normal(0, 0.1, 60),
        ]
    )
    w = stack_weights(P, truth)
    reference = brute_force_nnls(P, truth)
    np.testing.assert_allclose(w, reference / reference.sum(), rtol=1e-8, atol=1e-10)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    assert w[0] > w[1] > 0  # the less noisy member weighs more
    # an exact blend is recovered exactly
    exact = 0.3 * P[:, 0] + 0.7 * P[:, 2]
    np.testing.assert_allclose(stack_weights(P, exact), [0.3, 0, 0.7, 0], atol=1e-10)
    # nothing helps: equal weights rather than a division by zero
    np.testing.assert_allclose(stack_weights(P, -truth), np.full(4, 0.25))
    with pytest.raises(ConfigError, match="predictions"):
        stack_weights(P[:10], truth)


def test_stacked_ensemble_configuration_is_checked():
    lasso, svr, ridge = MODELS["lasso"], MODELS["svr"], MODELS["ridge"]
    with pytest.raises(ConfigError, match="stack_folds"):
        Ensemble("x", (lasso, svr), stack_folds=1)
    stacked = Ensemble("s", (lasso, svr), stack_folds=2)
    with pytest.raises(ConfigError, match="stacked"):
        Ensemble("outer", (stacked, ridge)).leaves()
    outer = Ensemble("outer", (MODELS["best"], ridge))
    assert [m.name for m in outer.leaves()] == ["lasso", "svr", "svr_clip", "mlp", "gbm", "ridge"]


def test_fixed_ensemble_weights_are_checked_and_normalized():
    lasso, svr = MODELS["lasso"], MODELS["svr"]
    np.testing.assert_allclose(Ensemble("x", (lasso, svr)).fixed_weights(), [0.5, 0.5])
    weighted = Ensemble("x", (lasso, svr), weights=(1, 3))
    np.testing.assert_allclose(weighted.fixed_weights(), [0.25, 0.75])
    np.testing.assert_allclose(weighted.combine({"lasso": np.array([1.0]), "svr": np.array([5.0])}), [4.0])
    np.testing.assert_allclose(MODELS["best"].fixed_weights(), np.array([1, 1, 1, 1, 2]) / 6)
    with pytest.raises(ConfigError, match="one weight per member"):
        Ensemble("x", (lasso, svr), weights=(1.0,))
    with pytest.raises(ConfigError, match="weights"):
        Ensemble("x", (lasso, svr), weights=(1.0, 0.0))
    with pytest.raises(ConfigError, match="stacked"):
        Ensemble("x", (lasso, svr), stack_folds=2, weights=(1.0, 1.0))


def test_gbm_averages_its_seeds():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 4)), rng.normal(size=120)
    config = GBMConfig(n_estimators=20, seeds=2)
    pred = config.build(7).fit(X, y).predict(X[:10])
    singles = [replace(config, seeds=1).build(seed).fit(X, y).predict(X[:10]) for seed in (7, 8)]
    np.testing.assert_allclose(pred, np.mean(singles, axis=0), rtol=1e-12)
    with pytest.raises(ConfigError, match="seeds"):
        GBMConfig(seeds=0)


def test_ensembles_hold_their_member_models():
    best = MODELS["best"]
    assert [m.name for m in best.members] == ["lasso", "svr", "svr_clip", "mlp", "gbm"]
    assert best.weights == (1.0, 1.0, 1.0, 1.0, 2.0)
    assert [m.name for m in MODELS["stack"].members] == ["lasso", "svr", "gbm", "mlp"]
    # registered members are the very objects registered; svr_clip is a member only
    assert all(m is MODELS[m.name] for m in best.members + MODELS["stack"].members if m.name != "svr_clip")
    assert "svr_clip" not in MODELS
    with pytest.raises(ConfigError, match="members = 'lasso'.*not names"):
        Ensemble("x", ("lasso", "svr"))
    with pytest.raises(ConfigError, match="members"):
        Ensemble("x", ())
    # predictions are keyed by name: two different models called "lasso" cannot share one key
    other = Pipeline("lasso", LassoConfig(alpha=1.0))
    with pytest.raises(ConfigError, match="models = 'lasso'"):
        Ensemble("x", (MODELS["lasso"], other))
    with pytest.raises(ConfigError, match="models = 'lasso'"):
        Ensemble("x", (best, other))
    assert Ensemble("x", (best, MODELS["lasso"])).leaves() == list(best.members)  # the same one


@pytest.fixture
def tiny_stack(monkeypatch) -> Ensemble:
    """A registered stacked ensemble of cheap members (tiny MLP and GBM included)."""
    register_tiny_models(monkeypatch)
    stack = Ensemble("t-stack", tuple(MODELS[m] for m in ("ridge", "svr", "gbm", "mlp")), stack_folds=3)
    monkeypatch.setitem(MODELS, "t-stack", stack)
    return stack


def test_stacked_weights_depend_on_training_rows_only(houses, tiny_stack):
    train, test = houses
    assert_other_rows_to_predict_do_not_matter(tiny_stack, train, test)
    # the weights are fitted from inner out-of-fold predictions of the training rows
    weights = tiny_stack.fit_weights(train, seed=3)
    oof = np.zeros((len(train), 4))
    for i, (tr, va) in enumerate(fold_indices(len(train), 3, 3)):
        for j, name in enumerate(["ridge", "svr", "gbm", "mlp"]):
            oof[va, j] = MODELS[name].fit_predict_log(
                train.iloc[tr].reset_index(drop=True), train.iloc[va].reset_index(drop=True), fold_seed(3, i)
            )
    y = np.log(train["SalePrice"].to_numpy())
    reference = brute_force_nnls(oof, y)
    np.testing.assert_allclose(weights, reference / reference.sum(), rtol=1e-6, atol=1e-9)


def test_stacking_leaves_out_outlier_rows_like_the_pipelines(houses, tiny_stack, monkeypatch):
    train, _ = houses
    odd = train.copy()
    odd.loc[:2, "GrLivArea"] = 5000.0
    odd.loc[:2, "SalePrice"] = 1_000.0  # flagged by the outlier rule: must not move the weights
    clean = odd.copy()
    clean.loc[:2, "SalePrice"] = 2_000.0
    np.testing.assert_allclose(tiny_stack.fit_weights(odd, seed=1), tiny_stack.fit_weights(clean, seed=1), rtol=1e-12)
    fitted_rows = []
    monkeypatch.setattr(house_models, "stack_weights", lambda P, y: fitted_rows.append(len(y)) or stack_weights(P, y))
    tiny_stack.fit_weights(odd, seed=1)
    replace(tiny_stack, outliers=None).fit_weights(odd, seed=1)
    assert fitted_rows == [len(odd) - 3, len(odd)]


def test_cross_validated_stack_matches_fitting_it_on_each_fold(houses, tiny_stack):
    train, _ = houses
    report = cross_validate(train, ["t-stack", "ridge"], folds=4, seed=2)
    tr, va = fold_indices(len(train), 4, 2)[1]
    direct = tiny_stack.fit_predict_log(
        train.iloc[tr].reset_index(drop=True), train.iloc[va].reset_index(drop=True), fold_seed(2, 1)
    )
    np.testing.assert_allclose(report["t-stack"].oof_log[va], direct, rtol=1e-12)
    assert len(report["t-stack"].weights) == 4 and report["ridge"].weights is None
    np.testing.assert_allclose(
        report["t-stack"].weights[1],
        tiny_stack.fit_weights(train.iloc[tr].reset_index(drop=True), fold_seed(2, 1)),
        rtol=1e-12,
    )


# --------------------------------------------------------------------------------------------
# Submission file
# --------------------------------------------------------------------------------------------


def test_write_submission_is_kaggle_format_and_atomic(tmp_path):
    ids = np.arange(1461, 1471)
    prices = np.linspace(1e5, 2e5, 10)
    path = write_submission(tmp_path / "sub" / "submission.csv", ids, prices)
    lines = path.read_text().splitlines()
    assert lines[0] == "Id,SalePrice" and len(lines) == 11
    back = pd.read_csv(path)
    assert back["Id"].dtype == np.int64 and back["Id"].tolist() == ids.tolist()
    np.testing.assert_allclose(back["SalePrice"], prices)
    assert [p.name for p in path.parent.iterdir()] == ["submission.csv"]  # no temp file left
    with pytest.raises(DataError, match="10 Ids but 9 prices"):
        submission_frame(ids, prices[:9])
    with pytest.raises(DataError, match="finite positive"):
        submission_frame(ids, np.r_[prices[:9], np.nan])
    with pytest.raises(DataError, match="folder"):
        write_submission(tmp_path, ids, prices)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [None, "cv", "submit"])
def test_every_house_command_has_help(command):
    import typer

    group = typer.main.get_command(house_app)
    cmd = group if command is None else group.commands[command]
    result = CliRunner().invoke(house_app, ([command] if command else []) + ["--help"])
    assert result.exit_code == 0, result.output
    assert cmd.help and " ".join(cmd.help.split()[:3]) in " ".join(result.output.split())
    names = (
        list(group.commands)
        if command is None
        else [opt for param in cmd.params for opt in param.opts if opt.startswith("--")]
    )
    assert names and all(name in result.output for name in names)


def test_house_is_registered_in_the_main_app():
    result = CliRunner().invoke(app, ["house", "--help"])
    assert result.exit_code == 0 and "submit" in result.output


def test_cli_cv_prints_each_models_fold_scores(tmp_path):
    import re

    from sklearn.model_selection import KFold

    folder = write_csvs(tmp_path / "hp", n_train=80)
    result = CliRunner().invoke(
        house_app,
        ["cv", "--models", "ridge,lasso", "--folds", "3", "--seed", "4", "--data-dir", str(folder), "--no-verify"],
    )
    assert result.exit_code == 0, result.output
    assert "3-fold shuffled CV (seed 4), 80 houses" in result.output
    assert "wall time" in result.output
    # the reference: each model fitted on sklearn's shuffled folds, scored by the book's metric
    train = check_schema(pd.read_csv(folder / "train.csv"), "train")
    price = train["SalePrice"].to_numpy()
    for name in ("ridge", "lasso"):
        scores = []
        for i, (tr, va) in enumerate(KFold(3, shuffle=True, random_state=4).split(train)):
            fold_train, fold_val = (train.iloc[r].reset_index(drop=True) for r in (tr, va))
            logs = MODELS[name].fit_predict_log(fold_train, fold_val, fold_seed(4, i))
            scores.append(book_log_rmse(np.exp(logs), price[va]))
        row = next(line for line in result.output.splitlines() if f" {name} " in line)
        mean, std, *folds = re.findall(r"\d+\.\d+", row)[:5]  # mean, std, 3 folds (then fit s)
        assert (mean, std) == (f"{np.mean(scores):.4f}", f"{np.std(scores):.4f}")
        assert folds == [f"{s:.3f}" for s in scores]


def test_cli_defaults_name_the_registered_models():
    import inspect

    from mlplab.cli.house import DEFAULT_MODELS as CLI_DEFAULT_MODELS
    from mlplab.cli.house import cv, submit
    from mlplab.house import DEFAULT_MODELS

    # the CLI spells its defaults out (importing the models at start-up would slow every command)
    models = inspect.signature(cv).parameters["models"].default
    assert models.default is None and CLI_DEFAULT_MODELS == ",".join(DEFAULT_MODELS)
    assert CLI_DEFAULT_MODELS in models.help  # the help text shows it (and what --model changes)
    assert set(DEFAULT_MODELS) == set(MODELS) - {"stack"}  # stack: 3x the time, no better (--models stack)
    for name in MODELS:
        assert name in models.help and name in inspect.signature(submit).parameters["model"].default.help


def test_cli_submit_writes_the_submission(tmp_path):
    folder = write_csvs(tmp_path / "hp")
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        house_app,
        ["submit", "--model", "ridge", "--out", str(out), "--data-dir", str(folder), "--no-verify"],
    )
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(out)
    assert list(sub.columns) == ["Id", "SalePrice"] and sub["Id"].tolist() == list(range(61, 81))


@pytest.mark.parametrize(
    "args, message",
    [
        (["cv", "--models", "ridge,nope"], "model = 'nope'"),
        (["cv", "--folds", "1"], "--folds = 1"),
        (["submit", "--model", "nope"], "model = 'nope'"),
        (["cv", "--models", "ridge"], "SHA-256"),  # the generated files are not the real ones
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, args, message):
    folder = write_csvs(tmp_path / "hp")
    result = CliRunner().invoke(house_app, [*args, "--data-dir", str(folder)])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


# --------------------------------------------------------------------------------------------
# Real data (only with MLPLAB_DATA)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def real_data(monkeypatch):
    if not REAL_DATA:
        pytest.skip("set MLPLAB_DATA to the folder holding house-prices/ for real-data tests")
    monkeypatch.setenv(sources.ENV_VAR, REAL_DATA)
    return load(download=False)  # verifies both SHA-256 checksums


def test_real_data_book_baseline_reproduces_the_book(real_data):
    assert real_data.train.shape == (1460, 81) and real_data.test.shape == (1459, 80)
    result = book_protocol_cv(real_data.train, real_data.test)
    assert 0.16 < result.val_mean < 0.18  # the book reports about 0.17


def test_real_data_submit_writes_1459_rows(real_data, tmp_path):
    out = tmp_path / "submission.csv"
    result = CliRunner().invoke(house_app, ["submit", "--model", "lasso", "--out", str(out)])
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(out)
    assert len(sub) == 1459 and sub["Id"].tolist() == list(range(1461, 2920))
    assert 100_000 < sub["SalePrice"].median() < 250_000


def test_real_data_lasso_strict_cv(real_data):
    report = cross_validate(real_data.train, ["lasso"], folds=5, seed=0)
    assert len(report["lasso"].oof_log) == 1460
    assert report["lasso"].mean < 0.13  # the book's baseline: 0.17


def test_cross_validate_and_fit_predict_take_progress_true(houses):
    train, test = houses
    quiet = cross_validate(train, ["ridge"], folds=2, seed=1)
    shown = cross_validate(train, ["ridge"], folds=2, seed=1, progress=True)
    assert [s.fold_scores for s in quiet.scores] == [s.fold_scores for s in shown.scores]
    np.testing.assert_array_equal(fit_predict(train, test, "ridge", progress=True), fit_predict(train, test, "ridge"))
