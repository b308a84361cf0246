"""Tune House Prices' models on the strict protocol's folds: sweeps, the mlp member, LightGBM, blends.

Every fold is the one of ``mlplab.house.cv`` (shuffled 5-fold; the outlier rule and each model's
features fitted on the fold's training rows only; every validation house scored in log space):

- ``sweep``: one ``run_sweep`` per fold trains a grid of plain MLPs as batched models
  (``loss=mse`` on the standardized ``log1p`` price, the ``mlp`` member's features) and records
  the validation loss after every epoch; a model's log-RMSE is ``sqrt(mse) * std`` of the fold's
  training targets. Ranked by the mean over folds, beside the ``mlp`` member on the same folds.
- ``member``: the ``mlp`` member (``MLPRegressor``) under each of ``--configs`` (JSON list of
  ``MLPConfig`` overrides), mean log-RMSE over the folds.
- ``lightgbm``: LightGBM regressors (``pip install lightgbm``; JSON list of ``LGBMRegressor``
  arguments) on the old ``gbm`` member's features (``TREE_FEATURES``), alone and in the old
  ``best`` (``MEMBERS``, ``OLD_GBM``) in place of ``gbm`` or beside it.
- ``blend``: candidate members (``candidates()``: the registered pipelines, ``gbm`` meaning the
  old member ``OLD_GBM``, and variants: other features, outliers kept, second seeds, other
  estimators; ``--define`` adds more) are cross-validated exactly as ``cross_validate`` does it
  (same folds, frames and fold seeds: ``cached_oof``), each one's out-of-fold predictions cached
  per shuffle in ``/tmp/house-cache`` (keyed by the model's ``repr``). Blends are then scored
  from the cache: ``--blends 'a+b+2*c;...'`` (weighted means in log space), ``--search`` (every
  equal-weight blend of the old best's members, one of them dropped or not, plus up to two of the
  listed candidates, ranked on ``--shuffles``). ``--confirm`` scores the named blends (not the
  search pool) on further shuffles, after the choice. ``--registered`` adds the registered ``best``.

    PYTHONPATH=src python bench/tune_house.py sweep --shuffles 0
    PYTHONPATH=src python bench/tune_house.py member --shuffles 0,1,2 --configs '[{}, {"hidden": 32}]'
    PYTHONPATH=src python bench/tune_house.py lightgbm --configs '[{"objective": "huber", "alpha": 0.15}]'

The search that chose the registered ``best`` (2026-12-03; tuned on shuffles 0-2, then
confirmed on 3-9; one thread, about 25 minutes in all from an empty cache)::

    T=bench/tune_house.py; S=--shuffles=0,1,2
    PYTHONPATH=src python $T blend $S --search ridge,svr_keep,lasso_keep,svr_c10,svr_lin,kridge
    PYTHONPATH=src python $T blend $S --search gbm_keep,gbm_s1,gbm_sq,gbm_lin,hgb,et,svr_c10,lasso_keep
    PYTHONPATH=src python $T blend $S --search svr_lin,svr_lin_c10,svr_lin_g5,svr_lin_c1,gbm_keep_lin,gbm_keep,gbm_lin
    PYTHONPATH=src python $T blend $S --blends 'lasso+svr+mlp+gbm_keep_lin+gk_s1;lasso+svr+mlp+svr_lin_g5+gbm_keep_lin+gk_s1'
    PYTHONPATH=src python $T blend $S --confirm 3,4,5,6,7,8,9 --registered \\
        --blends 'lasso+svr+mlp+gbm_keep_lin;lasso+svr+mlp+svr_lin_g5+gbm_keep_lin+gk_s1'

(``svr_lin_g5`` is the registered ``svr_clip``; ``gbm_keep_lin`` + ``gk_s1`` the two seeds of the
registered ``gbm``, which averages them in ``log1p`` space inside one member instead.)
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
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
from mlplab.house.models import (
    LINEAR_FEATURES,
    MODELS,
    TREE_FEATURES,
    GBMConfig,
    MLPBuild,
    MLPConfig,
    MLPRegressor,
    Pipeline,
    SVRConfig,
    one_thread,
)
from mlplab.sweep import SweepSpec, load_histories, run_sweep

GRID = {
    "hidden": ((64,), (256,), (1024,)),
    "dropout": (0.0, 0.5),
    "weight_decay": (0.01, 0.1, 0.3),
    "lr": (0.0003, 0.001, 0.003),
}
AXES = ["hidden", "dropout1", "weight_decay", "lr"]  # the grid's columns in the sweep's results
BASE = {"loss": "mse", "optimizer": "adamw", "batch_size": 64, "epochs": 60, "init": "he"}
MEMBERS = ("lasso", "svr", "gbm", "mlp")  # the old best's members, equal weights (gbm: OLD_GBM)
#: The gbm member before the blend search: one fit, TREE_FEATURES, the two partial sales dropped.
OLD_GBM = Pipeline("gbm", GBMConfig(seeds=1), TREE_FEATURES, description="gradient boosting, Huber loss")
#: The registered best, as blend weights over the candidates of candidates().
REGISTERED_BEST = {"lasso": 1.0, "svr": 1.0, "svr_clip": 1.0, "mlp": 1.0, "gbm_new": 2.0}


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
    old = [OLD_GBM if name == "gbm" else MODELS[name] for name in MEMBERS]
    oof = {s: cross_validate(train, old, folds=5, seed=s) for s in shuffles}

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


# --------------------------------------------------------------------------------------------
# blend: candidate members' out-of-fold predictions, cached per shuffle, and equal-weight blends
# --------------------------------------------------------------------------------------------

CACHE = Path("/tmp/house-cache")


@dataclass
class Reseeded:
    """An estimator configuration built with its fold's seed plus ``offset`` (a second draw)."""

    inner: object
    offset: int

    def build(self, seed: int) -> object:
        return self.inner.build((seed + self.offset) % 2**32)


def candidates() -> dict[str, Pipeline]:
    """Candidate blend members by name: the registered pipelines and variants of them."""
    from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor
    from sklearn.kernel_ridge import KernelRidge

    @dataclass
    class Sk:  # any scikit-learn estimator class with fixed arguments (random_state = the fold seed)
        cls: type
        kwargs: dict
        seeded: bool = True

        def build(self, seed: int) -> object:
            return self.cls(**self.kwargs, **({"random_state": seed} if self.seeded else {}))

    reg = {name: m for name, m in MODELS.items() if isinstance(m, Pipeline)}
    reg["gbm_new"], reg["gbm"] = reg["gbm"], OLD_GBM  # "gbm" is the old member, as in MEMBERS
    reg["svr_clip"] = next(m for m in MODELS["best"].members if m.name == "svr_clip")
    lasso, svr, gbm, mlp = (reg[n] for n in MEMBERS)
    keep_lin = replace(gbm, name="gbm_keep_lin", outliers=None, features=LINEAR_FEATURES)
    out = dict(reg)
    out.update(
        {
            "gbm_keep_lin": keep_lin,  # the new gbm with one seed; gk_s1 its second seed
            "gk_s1": replace(keep_lin, name="gk_s1", estimator=Reseeded(keep_lin.estimator, 1)),
            "mlp8": replace(mlp, name="mlp8", estimator=MLPBuild(MLPConfig(members=8))),
            "mlp_s1": replace(mlp, name="mlp_s1", estimator=Reseeded(mlp.estimator, 1)),
            "mlp_s2": replace(mlp, name="mlp_s2", estimator=Reseeded(mlp.estimator, 2)),
            "gbm_s1": replace(gbm, name="gbm_s1", estimator=Reseeded(gbm.estimator, 1)),
            "gbm_keep": replace(gbm, name="gbm_keep", outliers=None),  # the two partial sales kept
            "gbm_sq": replace(gbm, name="gbm_sq", estimator=replace(gbm.estimator, loss="squared_error")),
            "gbm_lin": replace(gbm, name="gbm_lin", features=LINEAR_FEATURES),
            "svr_keep": replace(svr, name="svr_keep", outliers=None),
            "lasso_keep": replace(lasso, name="lasso_keep", outliers=None),
            "mlp_keep": replace(mlp, name="mlp_keep", outliers=None),
            "svr_c10": replace(svr, name="svr_c10", estimator=SVRConfig(C=10.0, gamma=0.0002)),
            "svr_lin": replace(svr, name="svr_lin", features=LINEAR_FEATURES),
            "svr_lin_c10": replace(
                svr, name="svr_lin_c10", estimator=SVRConfig(C=10.0, gamma=0.0002), features=LINEAR_FEATURES
            ),
            "svr_lin_g5": replace(svr, name="svr_lin_g5", estimator=SVRConfig(gamma=0.0005), features=LINEAR_FEATURES),
            "svr_lin_c1": replace(
                svr, name="svr_lin_c1", estimator=SVRConfig(C=1.0, gamma=0.0005), features=LINEAR_FEATURES
            ),
            "kridge": replace(
                lasso,
                name="kridge",
                estimator=Sk(
                    KernelRidge, {"alpha": 3.0, "kernel": "poly", "degree": 2, "coef0": 10.0, "gamma": 0.001}, False
                ),
            ),
            "hgb": replace(
                gbm,
                name="hgb",
                estimator=Sk(
                    HistGradientBoostingRegressor,
                    {
                        "loss": "squared_error",
                        "learning_rate": 0.03,
                        "max_iter": 1500,
                        "max_leaf_nodes": 8,
                        "min_samples_leaf": 10,
                        "l2_regularization": 1.0,
                        "max_features": 0.3,
                        "early_stopping": False,
                    },
                ),
            ),
            "et": replace(
                gbm,
                name="et",
                estimator=Sk(
                    ExtraTreesRegressor, {"n_estimators": 300, "max_features": 0.3, "min_samples_leaf": 2, "n_jobs": 1}
                ),
            ),
        }
    )
    return out


def define(pool: dict[str, Pipeline], definitions: dict[str, dict]) -> None:
    """Add candidates to ``pool``: name -> {"base": candidate, "estimator": {field: value},
    "features": {field: value}, "keep_outliers": bool, "seed_offset": int}, each part optional
    but "base"."""
    for name, d in definitions.items():
        base = pool[d["base"]]
        model = replace(base, name=name)
        if d.get("estimator"):
            model = replace(model, estimator=replace(base.estimator, **d["estimator"]))
        if d.get("features"):
            model = replace(model, features=replace(base.features, **d["features"]))
        if d.get("seed_offset"):
            model = replace(model, estimator=Reseeded(model.estimator, d["seed_offset"]))
        if "keep_outliers" in d:
            model = replace(model, outliers=None if d["keep_outliers"] else OutlierRule())
        pool[name] = model


def cached_oof(train: pd.DataFrame, model: Pipeline, shuffle: int) -> tuple[np.ndarray, float]:
    """``model``'s out-of-fold log predictions on fold shuffle ``shuffle``, exactly as in
    ``cross_validate`` (same frames, same fold seeds); cached under ``CACHE`` by model and shuffle."""
    key = hashlib.sha1(repr(model).encode()).hexdigest()[:12]
    path = CACHE / f"{model.name}-{key}-s{shuffle}.npz"
    if path.exists():
        z = np.load(path)
        return z["oof"], float(z["seconds"])
    oof, t0 = np.zeros(len(train)), time.perf_counter()
    for i, (tr, va) in enumerate(fold_indices(len(train), 5, shuffle)):
        rows = train.iloc[tr].reset_index(drop=True)
        valid = train.iloc[va].drop(columns=TARGET).reset_index(drop=True)
        oof[va] = model.fit_predict_log(rows, valid, fold_seed(shuffle, i))
    seconds = time.perf_counter() - t0
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, oof=oof, seconds=seconds)
    return oof, seconds


def parse_blend(spec: str) -> dict[str, float]:
    """``"lasso+svr+2*gbm+mlp"`` -> {name: weight}."""
    out: dict[str, float] = {}
    for term in spec.split("+"):
        weight, _, name = term.rpartition("*")
        out[name.strip()] = out.get(name.strip(), 0.0) + float(weight or 1.0)
    return out


def tune_blend(
    train: pd.DataFrame,
    shuffles: list[int],
    confirm: list[int],
    blends: list[str],
    search: str,
    definitions: dict,
    registered: bool,
) -> None:
    pool = candidates()
    define(pool, definitions)
    specs = [parse_blend(b) for b in blends]
    search_pool = [n for n in search.split(",") if n]
    names = sorted(
        {n for s in specs for n in s}
        | set(search_pool)
        | set(MEMBERS)
        | (set(REGISTERED_BEST) if registered else set())
    )
    unknown = [n for n in names if n not in pool]
    if unknown:
        raise SystemExit(f"unknown candidates {unknown}; known: {', '.join(pool)}")
    y = np.log(train[TARGET].to_numpy(np.float64))
    every = sorted(set(shuffles) | set(confirm))
    splits = {s: [va for _, va in fold_indices(len(train), 5, s)] for s in every}
    oof: dict[tuple[str, int], np.ndarray] = {}
    confirmed = sorted(
        {n for s in specs for n in s} | set(MEMBERS) | (set(REGISTERED_BEST) if registered else set())
    )  # the search pool is not confirmed
    for name in names:
        for s in shuffles + [c for c in confirm if c not in shuffles and name in confirmed]:
            oof[name, s], seconds = cached_oof(train, pool[name], s)
        print(f"{name}: {seconds:.1f} s per shuffle (last computed)", flush=True)

    def fold_scores(weights: dict[str, float], over: list[int]) -> np.ndarray:
        total = sum(weights.values())
        out = []
        for s in over:
            pred = sum(w * oof[n, s] for n, w in weights.items()) / total
            out += [rmse(np.maximum(pred[va], 0.0), y[va]) for va in splits[s]]
        return np.array(out)

    def show(label: str, weights: dict[str, float]) -> None:
        row = f"{label:<40} tune {fold_scores(weights, shuffles).mean():.5f}"
        if confirm and all(n in confirmed for n in weights):
            row += f"  confirm {fold_scores(weights, confirm).mean():.5f}  all {fold_scores(weights, every).mean():.5f}"
        print(row, flush=True)

    print(f"\ntune shuffles {shuffles}, confirm shuffles {confirm}")
    for name in names:
        show(name, {name: 1.0})
    show("old best (" + "+".join(MEMBERS) + ")", dict.fromkeys(MEMBERS, 1.0))
    if all(n in pool for n in REGISTERED_BEST) and registered:
        show("registered best", REGISTERED_BEST)
    for spec, weights in zip(blends, specs):
        show(spec, weights)
    if search_pool:  # every equal-weight subset of best's members plus up to two of the pool, ranked on tune
        ranked = []
        base = list(MEMBERS)
        for k in range(3):
            for extra in itertools.combinations(search_pool, k):
                for drop in [None, *base]:
                    members = [m for m in base if m != drop] + list(extra)
                    weights = {m: members.count(m) * 1.0 for m in members}
                    ranked.append((fold_scores(weights, shuffles).mean(), "+".join(members)))
        print(f"\nequal-weight blends ranked on the tune shuffles (top 15 of {len(ranked)}):")
        for score, label in sorted(ranked)[:15]:
            print(f"  {score:.5f}  {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("sweep", "member", "lightgbm", "blend"))
    parser.add_argument("--shuffles", default="0,1,2", help="comma-separated fold shuffles (CV seeds)")
    parser.add_argument("--configs", default="[{}]", help="member / lightgbm: a JSON list of settings")
    parser.add_argument("--out", default="runs/house-sweeps", help="sweep: the sweep folders (resumed if there)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--top", type=int, default=15, help="sweep: rows of the ranking")
    parser.add_argument("--confirm", default="", help="blend: shuffles scored after the choice (not for choosing)")
    parser.add_argument("--blends", default="", help="blend: semicolon-separated blends, e.g. 'lasso+svr+2*gbm+mlp'")
    parser.add_argument("--registered", action="store_true", help="blend: score the registered best too")
    parser.add_argument("--define", default="{}", help="blend: JSON of more candidates (see define())")
    parser.add_argument("--search", default="", help="blend: comma-separated candidates to try adding to best")
    args = parser.parse_args()
    shuffles = [int(s) for s in args.shuffles.split(",")]
    train = load(args.data_dir).train
    t0 = time.perf_counter()
    if args.what == "sweep":
        tune_sweep(train, shuffles, Path(args.out), args.top)
    elif args.what == "member":
        tune_member(train, shuffles, json.loads(args.configs))
    elif args.what == "lightgbm":
        tune_lightgbm(train, shuffles, json.loads(args.configs))
    else:
        confirm = [int(s) for s in args.confirm.split(",") if s]
        blends = [b for b in args.blends.split(";") if b]
        tune_blend(train, shuffles, confirm, blends, args.search, json.loads(args.define), args.registered)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
