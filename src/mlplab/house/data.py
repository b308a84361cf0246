"""Loading the Kaggle House Prices data and checking its schema.

The competition ("House Prices: Advanced Regression Techniques", Ames, Iowa, Dean De Cock)
ships two CSV files: ``train.csv`` (1,460 houses with ``SalePrice``) and ``test.csv``
(1,459 houses without it). Dive into Deep Learning distributes byte-identical copies under the
names ``kaggle_house_pred_train.csv`` / ``kaggle_house_pred_test.csv`` on its public mirror.

:func:`load` looks for either naming in the folders of
``mlplab.data.sources.search_dirs``: only in ``--data-dir`` when it is given (a file missing
there is an error, not a reason to use another copy), else in ``$MLPLAB_DATA/house-prices`` and
the user cache. It checks the SHA-256 of what it finds and, if nothing is found (and no
``--data-dir`` was given), downloads the book's copy into the user cache (verified before it is
renamed into place, and stopped if it grows past the known file's size).

:func:`check_schema` is what every entry point (loader, :func:`mlplab.house.fit_predict`,
cross-validation) runs on a DataFrame before using it: besides the columns it checks that the
numbers are finite and of a plausible magnitude, so that ``inf`` or ``1e308`` never reaches a model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mlplab.atomic import describe_os_error
from mlplab.data import sources
from mlplab.data.sources import ENV_VAR, ProgressFn
from mlplab.errors import DataError

DATASET = "house-prices"
TARGET = "SalePrice"
ID = "Id"

#: The 36 numeric feature columns of the Kaggle schema (in file order).
NUMERIC_COLUMNS: tuple[str, ...] = (
    "MSSubClass", "LotFrontage", "LotArea", "OverallQual", "OverallCond", "YearBuilt",
    "YearRemodAdd", "MasVnrArea", "BsmtFinSF1", "BsmtFinSF2", "BsmtUnfSF", "TotalBsmtSF",
    "1stFlrSF", "2ndFlrSF", "LowQualFinSF", "GrLivArea", "BsmtFullBath", "BsmtHalfBath",
    "FullBath", "HalfBath", "BedroomAbvGr", "KitchenAbvGr", "TotRmsAbvGrd", "Fireplaces",
    "GarageYrBlt", "GarageCars", "GarageArea", "WoodDeckSF", "OpenPorchSF", "EnclosedPorch",
    "3SsnPorch", "ScreenPorch", "PoolArea", "MiscVal", "MoSold", "YrSold",
)  # fmt: skip

#: The 79 feature columns, in the order of the Kaggle files.
FEATURE_COLUMNS: tuple[str, ...] = (
    "MSSubClass", "MSZoning", "LotFrontage", "LotArea", "Street", "Alley", "LotShape",
    "LandContour", "Utilities", "LotConfig", "LandSlope", "Neighborhood", "Condition1",
    "Condition2", "BldgType", "HouseStyle", "OverallQual", "OverallCond", "YearBuilt",
    "YearRemodAdd", "RoofStyle", "RoofMatl", "Exterior1st", "Exterior2nd", "MasVnrType",
    "MasVnrArea", "ExterQual", "ExterCond", "Foundation", "BsmtQual", "BsmtCond",
    "BsmtExposure", "BsmtFinType1", "BsmtFinSF1", "BsmtFinType2", "BsmtFinSF2", "BsmtUnfSF",
    "TotalBsmtSF", "Heating", "HeatingQC", "CentralAir", "Electrical", "1stFlrSF", "2ndFlrSF",
    "LowQualFinSF", "GrLivArea", "BsmtFullBath", "BsmtHalfBath", "FullBath", "HalfBath",
    "BedroomAbvGr", "KitchenAbvGr", "KitchenQual", "TotRmsAbvGrd", "Functional", "Fireplaces",
    "FireplaceQu", "GarageType", "GarageYrBlt", "GarageFinish", "GarageCars", "GarageArea",
    "GarageQual", "GarageCond", "PavedDrive", "WoodDeckSF", "OpenPorchSF", "EnclosedPorch",
    "3SsnPorch", "ScreenPorch", "PoolArea", "PoolQC", "Fence", "MiscFeature", "MiscVal",
    "MoSold", "YrSold", "SaleType", "SaleCondition",
)  # fmt: skip

#: The 43 categorical (text) feature columns: the rest (in file order).
CATEGORICAL_COLUMNS: tuple[str, ...] = tuple(c for c in FEATURE_COLUMNS if c not in NUMERIC_COLUMNS)

#: Largest magnitude of a numeric feature: no area in square feet, year, count or dollar value
#: of a house comes near it (the largest in the Kaggle data is LotArea 215,245), while 1e308 or
#: inf would overflow the standardization and every model after it.
MAX_FEATURE = 1e9
#: Largest SalePrice, in dollars (Ames prices run from 34,900 to 755,000).
MAX_PRICE = 1e9
#: Largest CSV that :func:`read_csv` reads: 200 times the competition's files (460 kB), far more
#: than any re-saved copy needs, far less than what would exhaust memory in pandas.
MAX_CSV_BYTES = 100 * 2**20


@dataclass(frozen=True)
class _KnownFile:
    names: tuple[str, ...]  # accepted file names, Kaggle's first
    sha256: str
    url: str  # the book's public mirror
    rows: int
    size: int  # bytes: a download is stopped past it (more bytes cannot match the checksum)


MIRROR = "http://d2l-data.s3-accelerate.amazonaws.com/"
FILES: dict[str, _KnownFile] = {
    "train": _KnownFile(
        ("train.csv", "kaggle_house_pred_train.csv"),
        "1e18addf81e5e4d347cc17ee6075bbe4a42b7fa26b9e5b063e8f692a5f929d41",
        MIRROR + "kaggle_house_pred_train.csv",
        1460,
        460676,
    ),
    "test": _KnownFile(
        ("test.csv", "kaggle_house_pred_test.csv"),
        "8fdd3d829d4d986b58f845c9553b225e67dd8383624d90fb6ca1d4bed5798c1e",
        MIRROR + "kaggle_house_pred_test.csv",
        1459,
        451405,
    ),
}


@dataclass(frozen=True)
class HouseData:
    """The two tables of the competition and where they came from.

    Attributes
    ----------
    train : DataFrame, shape (1460, 81)
        ``Id``, the 79 features and ``SalePrice``.
    test : DataFrame, shape (1459, 80)
        ``Id`` and the 79 features.
    train_path, test_path : Path
        The files that were read.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    train_path: Path
    test_path: Path


def load(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    verify: bool = True,
    download: bool = True,
    progress: ProgressFn | None = None,
) -> HouseData:
    """Find (or download) and read the House Prices train and test CSVs.

    Parameters
    ----------
    data_dir : path, optional
        The folder holding ``train.csv``/``test.csv`` (Kaggle) or
        ``kaggle_house_pred_train.csv``/``kaggle_house_pred_test.csv`` (the book); when given,
        it is the only place searched and nothing is downloaded. Without it,
        ``$MLPLAB_DATA/house-prices`` and the user cache are searched.
    verify : bool
        Check each file's SHA-256 against the known copy (default). Pass ``False`` to read a
        copy whose bytes differ (say, re-saved by a spreadsheet); the schema is still checked.
    download : bool
        When no folder holds a file (and no ``data_dir`` is given), download the book's copy
        into the user cache (verified against the SHA-256 above before it is renamed into place).
    progress : callable, optional
        ``progress(bytes_so_far, total_or_None)`` during a download.

    Returns
    -------
    HouseData

    Raises
    ------
    DataError
        A file has the wrong checksum, fails the schema check, or could not be found/downloaded.
    """
    paths = {}
    for kind in ("train", "test"):
        path = sources.find_first(DATASET, FILES[kind].names, data_dir)
        if path is None:
            if not download or data_dir is not None:
                raise DataError(_not_found_message(kind, data_dir))
            known = FILES[kind]
            path = sources.cache_dir() / DATASET / known.names[1]
            sources.download(
                [known.url],
                path,
                verify=lambda p, k=kind: _verify(k, p),
                progress=progress,
                max_bytes=known.size,
            )
        elif verify:
            _verify(kind, path)
        paths[kind] = path
    train = read_csv(paths["train"], "train")
    test = read_csv(paths["test"], "test")
    return HouseData(train, test, paths["train"], paths["test"])


def read_csv(path: str | os.PathLike[str], kind: Literal["train", "test"]) -> pd.DataFrame:
    """Read one competition CSV and check its schema (see :func:`check_schema`).

    A path that is not a readable regular file, a file over :data:`MAX_CSV_BYTES`, text that is
    not UTF-8 and anything pandas cannot parse raise :class:`DataError` naming the file.
    """
    fix = "Fix: point --data-dir at a folder with the competition's CSV files."
    try:
        size = os.stat(path).st_size
        if not Path(path).is_file():
            what = "a folder" if Path(path).is_dir() else "not a regular file"
            raise DataError(f"cannot read {kind} file {path}: it is {what}. {fix}")
        if size > MAX_CSV_BYTES:  # checked before pandas tries to hold it all
            raise DataError(
                f"{kind} file {path} has {size:,} bytes, more than the {MAX_CSV_BYTES:,} a "
                f"House Prices table can plausibly have (the competition's has about 460 kB). {fix}"
            )
        frame = pd.read_csv(path)
    except UnicodeDecodeError as exc:
        byte = f" (it holds byte 0x{exc.object[exc.start]:02x})" if isinstance(exc.object, bytes) else ""
        raise DataError(
            f"cannot read {kind} file {path}: it is not UTF-8 text{byte}. Fix: save it as a "
            "UTF-8 CSV, or use the competition's file."
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read {kind} file {path}: {describe_os_error(exc)}. {fix}") from None
    except ValueError as exc:  # pandas' parser errors are ValueErrors; their text may span lines
        raise DataError(f"cannot read {kind} file {path}: {' '.join(str(exc).split())}. {fix}") from None
    return check_schema(frame, kind, source=str(path))


def check_schema(frame: object, kind: Literal["train", "test"], source: str = "DataFrame") -> pd.DataFrame:
    """Check that ``frame`` has the Kaggle schema and return a normalized copy.

    Checks: a DataFrame with at least one row; the ``Id`` column and all 79 feature columns
    present, each once; ``Id`` unique, finite and non-missing; numeric feature columns numeric,
    finite where present (NaN means missing and is fine, ``inf`` is not) and at most
    :data:`MAX_FEATURE` in magnitude; for ``kind="train"``, ``SalePrice`` present, numeric,
    finite, positive and at most :data:`MAX_PRICE`. Columns outside the schema are dropped, as
    is a ``SalePrice`` column in a test frame (it is never used for prediction).

    Parameters
    ----------
    frame : DataFrame
        The table to check.
    kind : {"train", "test"}
        Whether ``SalePrice`` is required.
    source : str
        Named in error messages (a file path, or ``"train_df"``).

    Returns
    -------
    DataFrame, shape (n, 80) for test or (n, 81) for train
        ``Id``, the features in file order (categorical ones as Python ``str`` or NaN), and for
        train ``SalePrice`` as float64. The index is reset to ``0..n-1``.

    Raises
    ------
    DataError
        Naming the column, the offending values and the fix.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"{source} must be a pandas DataFrame in the Kaggle House Prices schema, "
            f"got {type(frame).__name__}. Fix: read the CSV with pandas.read_csv."
        )
    if len(frame) == 0:
        raise DataError(f"{source} ({kind}) has no rows. Fix: pass the competition's {kind} table.")
    required = [ID, *FEATURE_COLUMNS] + ([TARGET] if kind == "train" else [])
    missing = [c for c in required if c not in frame.columns]
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        shown = ", ".join(missing[:10]) + more
        hint = " (a test table was passed as training data?)" if missing == [TARGET] else ""
        raise DataError(
            f"{source} ({kind}) lacks required column(s) {shown}{hint}. Fix: use the "
            f"Kaggle House Prices {kind} table with all {len(required)} columns."
        )
    repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()] if c in required})
    if repeated:  # frame[col] would be a table, not a column
        raise DataError(
            f"{source} ({kind}) has column(s) {', '.join(repeated)} more than once. Fix: keep one column of each name."
        )
    out = frame.loc[:, required].reset_index(drop=True).copy()
    for col in (ID, *NUMERIC_COLUMNS) + ((TARGET,) if kind == "train" else ()):
        out[col] = _numeric(out[col], col, source)
    ids = out[ID]
    if np.isfinite(ids).all() and (ids == ids.round()).all() and (ids.abs() <= 2**53).all():
        out[ID] = ids = ids.astype(np.int64)  # exact: every float up to 2**53 is an integer
    if not np.isfinite(ids).all() or ids.duplicated().any():
        dup = ids[ids.duplicated() | ~np.isfinite(ids)].head(5).tolist()
        raise DataError(
            f"{source}: column Id must hold unique, finite, non-missing values; offending: "
            f"{dup}. Fix: give every house its own Id."
        )
    for col in NUMERIC_COLUMNS:
        x = out[col]
        bad = np.isinf(x) | (x.abs() > MAX_FEATURE)  # NaN compares False: missing stays allowed
        if bad.any():
            raise DataError(
                f"{source}: column {col} must hold finite numbers of magnitude at most "
                f"{MAX_FEATURE:g} (blank means missing); {int(bad.sum())} value(s) are not "
                f"({_examples(out, bad, col)}). Fix: correct or blank those cells."
            )
    for col in CATEGORICAL_COLUMNS:
        out[col] = _text(out[col])
    if kind == "train":
        y = out[TARGET]
        bad = ~np.isfinite(y) | (y <= 0) | (y > MAX_PRICE)
        if bad.any():
            raise DataError(
                f"{source}: SalePrice must be a positive number of at most {MAX_PRICE:g} "
                f"dollars in every row; {int(bad.sum())} row(s) are not "
                f"({_examples(out, bad, TARGET)}). Fix: drop or correct those rows."
            )
    return out


def _examples(frame: pd.DataFrame, bad: pd.Series, col: str) -> str:
    """``"Id 3: inf, Id 7: 1e+308"``: the first five offending rows of ``col``."""
    rows = frame.loc[bad, [ID, col]].head(5)
    return ", ".join(f"Id {i}: {v:g}" for i, v in zip(rows[ID], rows[col]))


def _numeric(col: pd.Series, name: str, source: str) -> pd.Series:
    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna()
    if bad.any():
        examples = col[bad].head(3).tolist()
        raise DataError(
            f"{source}: column {name} must be numeric; found {examples!r} "
            f"({int(bad.sum())} value(s)). Fix: correct or blank those cells."
        )
    return converted.astype("float64")


def _text(col: pd.Series) -> pd.Series:
    """Categories as Python ``str`` objects, missing values as ``NaN`` (object dtype)."""
    present = col.notna().to_numpy()
    arr = np.full(len(col), np.nan, dtype=object)
    arr[present] = col[present].astype(str).to_numpy(dtype=object)
    return pd.Series(arr, index=col.index, dtype=object)


def _verify(kind: str, path: Path) -> None:
    known = FILES[kind]
    try:
        digest = sources.sha256_of_file(path)
    except OSError as exc:
        raise DataError(
            f"cannot read {kind} file {path}: {describe_os_error(exc)}. Fix: make it "
            "readable, or point --data-dir at a folder with the competition's CSV files."
        ) from None
    if digest != known.sha256:
        raise DataError(
            f"{path} has SHA-256 {digest}, expected {known.sha256} (the competition's {kind} "
            "file). "
            f"Fix: delete it so a fresh copy is downloaded, or, for a copy of your own, pass "
            f"--no-verify (verify=False)."
        )


def _not_found_message(kind: str, data_dir: str | os.PathLike[str] | None) -> str:
    names = " or ".join(FILES[kind].names)
    if data_dir is not None:
        return (
            f"no {kind} file ({names}) in --data-dir {Path(data_dir).expanduser()} (only that folder is "
            f"searched when it is given). Fix: put both CSV files there, or leave --data-dir out to "
            f"use ${ENV_VAR}/{DATASET}, the user cache or a download from {FILES[kind].url}."
        )
    places = "\n  ".join(f"{d.label}: {d.path}" for d in sources.search_dirs(DATASET, data_dir))
    return (
        f"no {kind} file ({names}) found in:\n  {places}\nFix: pass --data-dir, set "
        f"${ENV_VAR}, or allow the download from {FILES[kind].url}."
    )
