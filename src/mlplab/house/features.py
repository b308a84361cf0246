"""Turning a House Prices table into a numeric matrix: the book's way and a leak-free way.

Two preprocessors, both with ``fit`` / ``transform``:

* :class:`BookPreprocessor` is exactly what Dive into Deep Learning does (section "Predicting
  House Prices on Kaggle"): every numeric column standardized with the mean and (sample) standard
  deviation of the train and test rows *together*, missing values set to 0 (the mean), and every
  text column one-hot encoded with an extra "missing" indicator. It is fitted on the training and
  test features at once, as in the book (transductive, but it never sees a price).
* :class:`HousePreprocessor` is the better pipeline's: every statistic (fill values, which
  columns are log-transformed, the category lists, the scaling) is computed in :meth:`fit` from
  the training rows only, and :meth:`transform` only applies them, so validation or test rows
  cannot change how training rows are encoded.

Both return ``float64`` arrays of shape ``(n_rows, n_features)`` and name their columns in
``feature_names_``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlplab.errors import DataError, check_int, check_real
from mlplab.house.data import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS, TARGET

# --------------------------------------------------------------------------------------------
# The book's preprocessing
# --------------------------------------------------------------------------------------------


class BookPreprocessor:
    """The book's preprocessing: standardize numerics (NA to 0), one-hot text with NA indicator.

    Fit it on the features of the training and the test rows together (as the book does); it
    ignores ``Id`` and ``SalePrice``. Columns come out as pandas' ``get_dummies`` orders them: the
    36 numeric columns first, then for each text column its categories in sorted order followed
    by ``<column>_nan``.
    """

    def fit(self, features: pd.DataFrame) -> BookPreprocessor:
        """Learn means, standard deviations (ddof=1) and category lists from ``features``.

        Parameters
        ----------
        features : DataFrame, shape (n_rows, >= 79)
            Checked Kaggle-schema rows (see :func:`mlplab.house.data.check_schema`); in the
            book, the 1,460 training and 1,459 test rows stacked.
        """
        num = features.loc[:, NUMERIC_COLUMNS]
        self.mean_ = num.mean().to_numpy()
        self.std_ = num.std(ddof=1).to_numpy()
        self.categories_ = {col: sorted(features[col].dropna().unique().tolist()) for col in CATEGORICAL_COLUMNS}
        self.feature_names_ = list(NUMERIC_COLUMNS) + [
            f"{col}_{value}" for col in CATEGORICAL_COLUMNS for value in [*self.categories_[col], "nan"]
        ]
        return self

    def transform(self, features: pd.DataFrame) -> np.ndarray:
        """Encode ``features``; returns float64 of shape ``(n_rows, len(feature_names_))``."""
        num = features.loc[:, NUMERIC_COLUMNS].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (num - self.mean_) / self.std_
        z[~np.isfinite(z)] = 0.0  # NA (and, as pandas would give, 0/0 of a constant column) -> 0
        blocks = [z]
        for col in CATEGORICAL_COLUMNS:
            blocks.append(_one_hot(features[col], self.categories_[col], with_nan=True))
        return np.hstack(blocks)


def _one_hot(values: pd.Series, categories: list[str], with_nan: bool) -> np.ndarray:
    """Indicator columns, shape (n, len(categories) [+ 1]); unseen values give all zeros."""
    index = {category: i for i, category in enumerate(categories)}
    codes = values.map(index).fillna(-1).to_numpy(dtype=np.int64)  # -1: missing or unseen
    out = np.zeros((len(values), len(categories) + int(with_nan)))
    rows = np.flatnonzero(codes >= 0)
    out[rows, codes[rows]] = 1.0
    if with_nan:
        out[:, -1] = values.isna().to_numpy()
    return out


# --------------------------------------------------------------------------------------------
# The leak-free pipeline
# --------------------------------------------------------------------------------------------

# Text columns where NA means "the house has none" (no alley, no basement, ...).
_NA_MEANS_NONE = (
    "Alley", "BsmtQual", "BsmtCond", "BsmtExposure", "BsmtFinType1", "BsmtFinType2",
    "FireplaceQu", "GarageType", "GarageFinish", "GarageQual", "GarageCond", "PoolQC", "Fence",
    "MiscFeature", "MasVnrType",
)  # fmt: skip
# Numeric columns where NA means zero (no veneer, no basement, no garage).
_NA_MEANS_ZERO = (
    "MasVnrArea", "BsmtFinSF1", "BsmtFinSF2", "BsmtUnfSF", "TotalBsmtSF", "BsmtFullBath",
    "BsmtHalfBath", "GarageCars", "GarageArea",
)  # fmt: skip
_QUALITY = {"Ex": 5, "Gd": 4, "TA": 3, "Fa": 2, "Po": 1, "None": 0}
_ORDINAL: dict[str, dict[str, int]] = {
    **{c: _QUALITY for c in ("ExterQual", "ExterCond", "BsmtQual", "BsmtCond", "HeatingQC",
                             "KitchenQual", "FireplaceQu", "GarageQual", "GarageCond", "PoolQC")},
    "BsmtExposure": {"Gd": 4, "Av": 3, "Mn": 2, "No": 1, "None": 0},
    "BsmtFinType1": {"GLQ": 6, "ALQ": 5, "BLQ": 4, "Rec": 3, "LwQ": 2, "Unf": 1, "None": 0},
    "BsmtFinType2": {"GLQ": 6, "ALQ": 5, "BLQ": 4, "Rec": 3, "LwQ": 2, "Unf": 1, "None": 0},
    "GarageFinish": {"Fin": 3, "RFn": 2, "Unf": 1, "None": 0},
    "Functional": {"Typ": 7, "Min1": 6, "Min2": 5, "Mod": 4, "Maj1": 3, "Maj2": 2, "Sev": 1,
                   "Sal": 0},
    "LandSlope": {"Gtl": 2, "Mod": 1, "Sev": 0},
    "PavedDrive": {"Y": 2, "P": 1, "N": 0},
    "CentralAir": {"Y": 1, "N": 0},
    "Street": {"Pave": 1, "Grvl": 0},
}  # fmt: skip
# Features whose (centered) squares `squares=True` adds: the strongest single predictors.
_SQUARED = (
    "OverallQual", "GrLivArea", "TotalSF", "GarageCars", "GarageArea", "YearBuilt",
    "YearRemodAdd", "TotalBath", "ExterQual_ord", "KitchenQual_ord", "BsmtQual_ord", "1stFlrSF",
    "LotArea", "Age",
)  # fmt: skip
_INTERACTIONS = (
    ("OverallQual", "GrLivArea"), ("OverallQual", "TotalSF"), ("OverallQual", "Age"),
    ("OverallQual", "GarageCars"), ("GrLivArea", "Age"),
)  # fmt: skip
# Numeric codes that are really categories.
_AS_CATEGORY = ("MSSubClass", "MoSold", "YrSold")


@dataclass
class FeatureConfig:
    """Options of :class:`HousePreprocessor`.

    The defaults are a plain pipeline; the tuned settings of each model family are
    ``LINEAR_FEATURES``, ``KERNEL_FEATURES`` and ``TREE_FEATURES`` in :mod:`mlplab.house.models`.
    """

    skew_threshold: float = 0.75  # sample skewness on the training rows above which a numeric
    #                               feature gets the signed log, sign(x) * log1p(|x|)
    ordinal: bool = True  # quality-like text columns as ordered numbers (Ex=5 ... None=0)
    engineered: bool = True  # add total area, bathrooms, ages, porch area, has-x flags
    min_category_count: int = 1  # one-hot a category only if it occurs this often in training
    clip_to_train_range: bool = False  # clip each scaled feature to its training [min, max]
    clip_quantile: float = 0.0  # with clipping, numeric features clip to the training
    #                             [q, 1 - q] quantiles instead of [min, max]
    squares: bool = False  # add centered squares of the strongest numeric features
    interactions: bool = False  # add OverallQual x (living area, total area, age) products
    sale_month_as_category: bool = True  # one-hot MoSold and YrSold (False: drop MoSold,
    #                                      keep YrSold as a number)

    def __post_init__(self) -> None:
        check_real("skew_threshold", self.skew_threshold, 0.0, None, what="the skewness threshold")
        check_int("min_category_count", self.min_category_count, 1)
        check_real("clip_quantile", self.clip_quantile, 0.0, 0.5, high_open=True, what="the clipping quantile")


@dataclass
class HousePreprocessor:
    """Leak-free preprocessing: every statistic comes from the rows passed to :meth:`fit`.

    Steps: fill missing values (NA meaning "none" becomes the category ``"None"`` or 0;
    ``LotFrontage`` the training median of its neighborhood; anything else the training
    median or most frequent value), recode numeric codes (``MSSubClass``, ``MoSold``,
    ``YrSold``) as categories, map quality-like text to ordered numbers, add engineered
    features, apply the signed log to numeric features whose training skewness exceeds
    ``config.skew_threshold``, optionally add centered squares and products of the strongest
    features, one-hot the remaining text columns with the training categories (unseen ones give
    all zeros), standardize every column with the training mean and standard deviation and,
    optionally, clip each column to its training range (or training quantiles).
    """

    config: FeatureConfig = field(default_factory=FeatureConfig)

    # -- public -------------------------------------------------------------------------------
    def fit(self, train: pd.DataFrame) -> HousePreprocessor:
        """Learn every statistic from ``train`` (checked Kaggle-schema rows; price ignored).

        Parameters
        ----------
        train : DataFrame, shape (n_train, >= 80)
        """
        if len(train) < 2:
            raise DataError(
                f"HousePreprocessor.fit needs at least 2 training rows, got {len(train)}. Fix: pass more training rows."
            )
        cfg = self.config
        self.numeric_fill_ = train.loc[:, NUMERIC_COLUMNS].median().fillna(0.0).to_dict()
        self.lot_frontage_by_hood_ = train.groupby("Neighborhood")["LotFrontage"].median().dropna()
        mode = train.loc[:, CATEGORICAL_COLUMNS].mode(dropna=True)
        self.text_fill_ = {
            c: (mode[c].iloc[0] if len(mode) and pd.notna(mode[c].iloc[0]) else "None") for c in CATEGORICAL_COLUMNS
        }
        num, text = self._clean(train)
        skew = num.skew()
        binary = num.nunique() <= 2
        self.log_columns_ = [c for c in num.columns if not binary[c] and skew[c] > cfg.skew_threshold]
        num = self._logged(num)
        self.square_columns_ = [c for c in _SQUARED if c in num.columns] if cfg.squares else []
        self.interaction_pairs_ = (
            [(a, b) for a, b in _INTERACTIONS if a in num.columns and b in num.columns] if cfg.interactions else []
        )
        used = set(self.square_columns_) | {c for pair in self.interaction_pairs_ for c in pair}
        used = sorted(used)
        self.poly_center_ = num[used].mean()
        num = self._polynomial(num)
        self.categories_ = {}
        for col in text.columns:
            counts = text[col].value_counts()
            self.categories_[col] = sorted(counts.index[counts >= cfg.min_category_count])
        self.numeric_names_ = list(num.columns)
        self.feature_names_ = self.numeric_names_ + [
            f"{col}_{v}" for col, cats in self.categories_.items() for v in cats
        ]
        raw = self._encode(num, text)
        self.mean_ = raw.mean(axis=0)
        std = raw.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        scaled = (raw - self.mean_) / self.scale_
        self.min_, self.max_ = scaled.min(axis=0), scaled.max(axis=0)
        if cfg.clip_quantile > 0:
            k = len(self.numeric_names_)
            self.min_[:k] = np.quantile(scaled[:, :k], cfg.clip_quantile, axis=0)
            self.max_[:k] = np.quantile(scaled[:, :k], 1 - cfg.clip_quantile, axis=0)
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode ``frame`` with the fitted statistics; shape ``(n_rows, len(feature_names_))``."""
        num, text = self._clean(frame)
        raw = self._encode(self._polynomial(self._logged(num)), text)
        scaled = (raw - self.mean_) / self.scale_
        if self.config.clip_to_train_range:
            scaled = np.clip(scaled, self.min_, self.max_)
        return scaled

    def fit_transform(self, train: pd.DataFrame) -> np.ndarray:
        """``fit(train)`` then ``transform(train)``."""
        return self.fit(train).transform(train)

    # -- steps --------------------------------------------------------------------------------
    def _clean(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Filled numeric features (with engineered ones) and filled text features."""
        cfg = self.config
        num = frame.loc[:, NUMERIC_COLUMNS].astype(np.float64).copy()
        text = frame.loc[:, CATEGORICAL_COLUMNS].copy()
        for col in _NA_MEANS_NONE:
            text[col] = text[col].fillna("None")
        for col in CATEGORICAL_COLUMNS:
            text[col] = text[col].fillna(self.text_fill_[col])
        for col in _NA_MEANS_ZERO:
            num[col] = num[col].fillna(0.0)
        num["GarageYrBlt"] = num["GarageYrBlt"].fillna(num["YearBuilt"])
        by_hood = frame["Neighborhood"].map(self.lot_frontage_by_hood_).astype(np.float64)
        num["LotFrontage"] = num["LotFrontage"].fillna(by_hood)
        num = num.fillna(self.numeric_fill_)
        as_category = _AS_CATEGORY if cfg.sale_month_as_category else ("MSSubClass",)
        if not cfg.sale_month_as_category:
            num = num.drop(columns="MoSold")
        for col in as_category:
            text[col] = num.pop(col).map(lambda v: f"{v:g}")
        if cfg.ordinal:
            for col, mapping in _ORDINAL.items():
                # unknown levels get the middle of the scale rather than an arbitrary extreme
                middle = float(np.median(list(mapping.values())))
                num[col + "_ord"] = text.pop(col).map(mapping).astype(np.float64).fillna(middle)
        if cfg.engineered:
            num = num.assign(
                TotalSF=num["TotalBsmtSF"] + num["1stFlrSF"] + num["2ndFlrSF"],
                TotalBath=num["FullBath"] + 0.5 * num["HalfBath"] + num["BsmtFullBath"] + 0.5 * num["BsmtHalfBath"],
                TotalPorchSF=num["OpenPorchSF"]
                + num["EnclosedPorch"]
                + num["3SsnPorch"]
                + num["ScreenPorch"]
                + num["WoodDeckSF"],
                Age=frame["YrSold"].to_numpy(np.float64) - num["YearBuilt"],
                RemodAge=frame["YrSold"].to_numpy(np.float64) - num["YearRemodAdd"],
                Has2ndFlr=(num["2ndFlrSF"] > 0).astype(np.float64),
                HasBsmt=(num["TotalBsmtSF"] > 0).astype(np.float64),
                HasGarage=(num["GarageArea"] > 0).astype(np.float64),
                HasFireplace=(num["Fireplaces"] > 0).astype(np.float64),
                HasPool=(num["PoolArea"] > 0).astype(np.float64),
            )
            num["Age"] = num["Age"].fillna(0.0)
            num["RemodAge"] = num["RemodAge"].fillna(0.0)
        return num, text

    def _logged(self, num: pd.DataFrame) -> pd.DataFrame:
        num = num.copy()
        for col in self.log_columns_:
            x = num[col].to_numpy()
            num[col] = np.sign(x) * np.log1p(np.abs(x))
        return num

    def _polynomial(self, num: pd.DataFrame) -> pd.DataFrame:
        if not self.square_columns_ and not self.interaction_pairs_:
            return num
        centered = num[self.poly_center_.index] - self.poly_center_
        extra = {f"{c}_sq": centered[c] ** 2 for c in self.square_columns_}
        extra.update({f"{a}_x_{b}": centered[a] * centered[b] for a, b in self.interaction_pairs_})
        return num.assign(**extra)

    def _encode(self, num: pd.DataFrame, text: pd.DataFrame) -> np.ndarray:
        blocks = [num.loc[:, self.numeric_names_].to_numpy(np.float64)]
        for col, cats in self.categories_.items():
            blocks.append(_one_hot(text[col], cats, with_nan=False))
        return np.hstack(blocks)


def log_target(train: pd.DataFrame) -> np.ndarray:
    """The better pipeline's regression target, ``log1p(SalePrice)``; shape ``(n_train,)``."""
    return np.log1p(train[TARGET].to_numpy(np.float64))


def log_price(predicted: np.ndarray) -> np.ndarray:
    """``log(price)`` from predicted :func:`log_target` values ``z``, prices clamped to >= 1.

    ``log(max(expm1(z), 1))``: the inverse of ``log1p``, then the book's clamp, in log space.
    For the prices of Ames ($34,900 and up) it differs from ``z`` by less than 3e-5.

    Parameters
    ----------
    predicted : ndarray, shape (m,)

    Returns
    -------
    ndarray, shape (m,)
    """
    return np.log(np.clip(np.expm1(predicted), 1.0, None))


@dataclass(frozen=True)
class OutlierRule:
    """Training rows to drop: living area above ``min_area`` sold below ``max_price``.

    De Cock, who compiled the data, recommends removing houses over 4,000 sq ft; the two such
    houses that sold cheaply (partial sales, ``Id`` 524 and 1299) distort linear fits. The rule
    is applied to training rows only; validation and test rows are always kept.
    """

    min_area: float = 4000.0  # GrLivArea (sq ft) above which a house is suspect
    max_price: float = 300_000.0  # ... and dropped if it sold below this price

    def mask(self, train: pd.DataFrame) -> np.ndarray:
        """Boolean array, shape ``(n_train,)``: True for rows to drop."""
        return ((train["GrLivArea"] > self.min_area) & (train[TARGET] < self.max_price)).to_numpy()

    def keep(self, train: pd.DataFrame) -> pd.DataFrame:
        """``train`` without the rows :meth:`mask` flags (all of them if it flags every row)."""
        drop = self.mask(train)
        return train if drop.all() else train.loc[~drop]
