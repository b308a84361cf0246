"""Tune House Prices' models on the strict protocol's folds: the sweep engine, the mlp member, LightGBM.

Every fold is the one of ``mlplab.house.cv`` (shuffled 5-fold; the outlier rule and each model's
features fitted on the fold's training rows only; every validation house scored in log space):

- ``sweep``: one ``run_sweep`` per fold trains a grid of plain MLPs as batched models
  (``loss=mse`` on the standardized ``log1p`` price, the ``mlp`` member's features) and records
  the validation loss after every epoch; a model's log-RMSE is ``sqrt(mse) * std`` of the fold's
  training targets. Ranked by the mean over folds, beside the ``mlp`` member on the same folds.
- ``member``: the ``mlp`` member (``MLPRegressor``) under each of ``--configs`` (JSON list of
  ``MLPConfig`` overrides), mean log-RMSE over the folds.
- ``lightgbm``: LightGBM regressors (``pip install lightgbm``; JSON list of ``LGBMRegressor``
  arguments) on the ``gbm`` member's features, alone and in ``best`` in place of ``gbm`` or beside it.

    PYTHONPATH=src python bench/tune_house.py sweep --shuffles 0
    PYTHONPATH=src python bench/tune_house.py member --shuffles 0,1,2 --configs '[{}, {"hidden": 32}]'
    PYTHONPATH=src python bench/tune_house.py lightgbm --configs '[{"objective": "huber", "alpha": 0.15}]'
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mlplab.data import Data, Split
from mlplab.house import load
from mlplab.house.cv import cross_validate
from mlplab.house.data import TARGET
from mlplab.house.features import FeatureConfig, HousePreprocessor, OutlierRule, log_price, log_target
from mlplab.house.folds import fold_indices, fold_seed
from mlplab.house.models import LINEAR_FEATURES, TREE_FEATURES, MLPConfig, MLPRegressor, one_thread
from mlplab.sweep import SweepSpec, load_histories, run_sweep

GRID = {
    "hidden": ((64,), (256,), (1024,)),
    "dropout": (0.0, 0.5),
    "weight_decay": (0.01, 0.1, 0.3),
    "lr": (0.0003, 0.001, 0.003),
}
AXES = ["hidden", "dropout1", "weight_decay", "lr"]  # the grid's columns in the sweep's results
BASE = {"loss": "mse", "optimizer": "adamw", "batch_size": 64, "epochs": 60, "init": "he"}
MEMBERS = ("lasso", "svr", "gbm", "mlp")  # best's members, equal weights


def folds(train: pd.DataFrame, shuffles: list[int], features: FeatureConfig) -> Iterator[tuple]:
    """(shuffle, validation rows, X_train, y_train (log1p), X_valid, y_valid (log), model seed) of every fold."""
    for s in shuffles:
        for i, (tr, va) in enumerate(fold_indices(len(train), 5, s)):
            rows = OutlierRule().keep(train.iloc[tr].reset_index(drop=True))
            valid = train.iloc[va].reset_index(drop=True)
            pre = HousePreprocessor(features).fit(rows)
            x_va = pre.transform(valid.drop(columns=TARGET))
            y_va = np.log(valid[TARGET].to_numpy(np.float64))
            yield s, va, pre.transform(rows), log_target(rows), x_va, y_va, fold_seed(s, i)


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def tune_sweep(train: pd.DataFrame, shuffles: list[int], out: Path, top: int) -> None:
    spec = SweepSpec(base=BASE, grid=GRID, seeds=(0,))
    curves = []
    for k, (s, _, x_tr, y_tr, x_va, y_va, _) in enumerate(folds(train, shuffles, LINEAR_FEATURES)):
        i = k % 5  # the fold within its shuffle
        mean, std = y_tr.mean(), y_tr.std()
        train_split, valid_split = (
            Split(torch.tensor(x, dtype=torch.float32), torch.tensor((y - mean) / std, dtype=torch.float32)[:, None])
            for x, y in ((x_tr, y_tr), (x_va, y_va))
        )
        folder = out / f"shuffle{s}-fold{i}"
        run_sweep(spec, Data(train_split, valid_split), folder)
        h = load_histories(folder)
        h["rmse"] = np.sqrt(h["test_loss"]) * std
        curves.append(h)
    member = [v for s in shuffles for v in cross_validate(train, ["mlp"], folds=5, seed=s)["mlp"].fold_scores]
    h = pd.concat(curves)
    h["hidden"] = h["hidden"].astype(str)
    print(f"`mlp` member (MLPConfig defaults) over the same {len(member)} folds: {np.mean(member):.4f}\n")
    print(f"plain MLPs, {BASE}, grid {GRID}\n")
    last = h[h["epoch"] == h["epoch"].max()].groupby(AXES)["rmse"].agg(["mean", "max", "count"]).sort_values("mean")
    print("at the last epoch:\n" + last.head(top).to_string(float_format="%.4f"))
    any_epoch = h.groupby([*AXES, "epoch"])["rmse"].mean().sort_values()
    print(
        "\nat the best epoch (chosen on these folds: optimistic):\n" + any_epoch.head(5).to_string(float_format="%.4f")
    )


def tune_member(train: pd.DataFrame, shuffles: list[int], configs: list[dict]) -> None:
    data = list(folds(train, shuffles, LINEAR_FEATURES))
    for overrides in configs:
        t0, scores = time.perf_counter(), []
        for *_, x_tr, y_tr, x_va, y_va, seed in data:
            with one_thread():
                model = MLPRegressor(MLPConfig(**overrides), seed=seed).fit(x_tr, y_tr)
                scores.append(rmse(log_price(model.predict(x_va)), y_va))
        seconds = time.perf_counter() - t0
        print(f"{json.dumps(overrides)}: {np.mean(scores):.5f} over {len(scores)} folds ({seconds:.0f} s)", flush=True)


def tune_lightgbm(train: pd.DataFrame, shuffles: list[int], configs: list[dict]) -> None:
    import lightgbm

    y = np.log(train[TARGET].to_numpy(np.float64))
    splits = {s: [va for _, va in fold_indices(len(train), 5, s)] for s in shuffles}
    oof = {s: cross_validate(train, list(MEMBERS), folds=5, seed=s) for s in shuffles}

    def mean_rmse(pred: dict[int, np.ndarray]) -> float:
        return float(np.mean([rmse(p[va], y[va]) for s, p in pred.items() for va in splits[s]]))

    def blend(names: tuple[str, ...], extra: dict[int, np.ndarray] | None = None) -> dict[int, np.ndarray]:
        return {s: np.mean([oof[s][n].oof_log for n in names] + ([extra[s]] if extra else []), 0) for s in shuffles}

    print(
        f"gbm alone {mean_rmse({s: oof[s]['gbm'].oof_log for s in shuffles}):.5f}, best {mean_rmse(blend(MEMBERS)):.5f}"
    )
    data = list(folds(train, shuffles, TREE_FEATURES))
    for args in configs:
        pred = {s: np.zeros(len(train)) for s in shuffles}
        for s, va, x_tr, y_tr, x_va, _, seed in data:
            model = lightgbm.LGBMRegressor(n_jobs=1, verbose=-1, random_state=seed, **args).fit(x_tr, y_tr)
            pred[s][va] = log_price(model.predict(x_va))
        print(
            f"{json.dumps(args)}: alone {mean_rmse(pred):.5f}, "
            f"in best for gbm {mean_rmse(blend(('lasso', 'svr', 'mlp'), pred)):.5f}, "
            f"beside gbm {mean_rmse(blend(MEMBERS, pred)):.5f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("sweep", "member", "lightgbm"))
    parser.add_argument("--shuffles", default="0,1,2", help="comma-separated fold shuffles (CV seeds)")
    parser.add_argument("--configs", default="[{}]", help="member / lightgbm: a JSON list of settings")
    parser.add_argument("--out", default="runs/house-sweeps", help="sweep: the sweep folders (resumed if there)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--top", type=int, default=15, help="sweep: rows of the ranking")
    args = parser.parse_args()
    shuffles = [int(s) for s in args.shuffles.split(",")]
    train = load(args.data_dir).train
    t0 = time.perf_counter()
    if args.what == "sweep":
        tune_sweep(train, shuffles, Path(args.out), args.top)
    elif args.what == "member":
        tune_member(train, shuffles, json.loads(args.configs))
    else:
        tune_lightgbm(train, shuffles, json.loads(args.configs))
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
