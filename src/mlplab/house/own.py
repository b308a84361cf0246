"""The learner's own House Prices model, on the same footing as mlplab's models.

:func:`as_model` turns what the learner gives into a model that the strict cross-validation
(:func:`mlplab.house.cv`), :func:`mlplab.house.fit_predict` and ``mlplab house submit`` treat like
any registered one:

* a scikit-learn-style regressor: an object with ``fit(X, y)`` and ``predict(X)``, a class of one
  (constructed without arguments), or a function without arguments that returns one;
* a torch network: an ``nn.Module`` subclass or a function of one argument, called with the number
  of input features and trained by :class:`~mlplab.house.torch_regressor.TorchRegressor`
  (``mlplab.train.fit``); a ``TorchRegressor(factory, lr=...)`` of your own sets the training;
* a registered name (``"mlp"``), or ``"MODULE:NAME"`` naming any of the above in an importable
  module or a file (``path/to/file.py:NAME``), see :func:`resolve`.

What the model sees. In every fit (every fold, or all training houses for a submission) the
training rows that the outlier rule keeps (the same :class:`~mlplab.house.features.OutlierRule` as
the members', unless ``outliers=None``) go through a preprocessing fitted on them alone: by default
the ``mlp`` member's (:class:`~mlplab.house.features.HousePreprocessor` with ``LINEAR_FEATURES``),
or the learner's own ``fit``/``transform`` object. The regressor is fitted on ``X`` of shape (n, d)
and ``y = log1p(SalePrice)`` of shape (n,), the target every member is fitted on, and predicts
``log1p(SalePrice)`` for the rows to predict, shape (m,) or (m, 1); mlplab turns that into
``log(price)`` (:func:`~mlplab.house.features.log_price`) and scores it.

What it cannot see. The rows to predict are handed over without ``SalePrice``; every frame and
array handed over is a fresh copy that shares no memory with the full table; each fit gets a fresh
regressor and a fresh preprocessor (``sklearn.base.clone``, a copy, or a new call of the class or
function), so an object cannot carry prices from one fold into the next; and after the folds,
:meth:`OwnModel.check_memoryless` refits the first fold and refuses a model that predicts it much
better the second time, which is what a model that remembers houses across fits (in a module
global, a class attribute or a cache) does. What no check inside one Python process can stop is
code that reads the CSV files itself or walks the interpreter's frames to the caller's table.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mlplab.errors import ConfigError, MlplabError
from mlplab.house.data import TARGET
from mlplab.house.features import FeatureConfig, HousePreprocessor, OutlierRule, log_price, log_target
from mlplab.house.models import LINEAR_FEATURES, MODELS, BookBaseline, Ensemble, Pipeline, get_model, one_thread

#: The first fold refitted after all folds may score at most this much better than the first time
#: (0.8: 20% lower log-RMSE) before the model counts as remembering houses between fits. A model
#: that reproduces its seeds scores exactly the same; one that draws unseeded random numbers moves
#: by a few percent; one that remembers prices scores near 0.
MEMORY_FACTOR = 0.8

#: Largest |prediction| accepted: log1p of an Ames price is 10.5 to 13.5, so a larger value is a
#: price in dollars (or a blow-up), and expm1 of it would overflow a price to infinity soon after.
MAX_LOG1P_PRICE = 100.0

SPEC_HELP = "MODULE:NAME, e.g. my_house.py:mlp or sklearn.linear_model:Ridge"
WHAT_A_MODEL_IS = (
    "a scikit-learn-style regressor (fit(X, y) and predict(X)), its class, a function without arguments "
    "returning one, or an nn.Module factory (an nn.Module subclass or a function of n_features)"
)


class OwnModelError(MlplabError):
    """The learner's model or preprocessing raised an exception, or returned something unusable."""


# --------------------------------------------------------------------------------------------
# MODULE:NAME
# --------------------------------------------------------------------------------------------


def resolve(spec: str, flag: str = "model") -> object:
    """The object that ``spec`` names: ``MODULE:NAME`` or ``path/to/file.py:NAME``.

    ``MODULE`` is imported as Python imports it, with the current folder searched first (as
    ``python -m`` does); a ``MODULE`` ending in ``.py`` or containing a path separator is loaded
    from that file (its folder searched first for its own imports). ``NAME`` may be dotted
    (``module:Class.attribute``).

    Raises
    ------
    ConfigError
        ``spec`` has no ``:``, the module or file does not exist, or it has no ``NAME``.
    OwnModelError
        Importing the module raised an exception (the message names it and where).
    """
    if not isinstance(spec, str) or spec.count(":") < 1 or not all(spec.rpartition(":")[::2]):
        raise ConfigError(flag, spec, f"expected {SPEC_HELP} (the module or file, a colon, then the name in it)")
    where, _, name = spec.rpartition(":")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _load_file(Path(where), spec, flag)
    else:
        module = _import(where, spec, flag)
    obj: object = module
    for part in name.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in vars(module) if not n.startswith("_"))[:12]
            raise ConfigError(
                flag,
                spec,
                f"{where} has no {name!r}; it defines {', '.join(public) or 'nothing public'}. Fix: name one of "
                f"them after the colon",
            )
        obj = getattr(obj, part)
    return obj


def _import(module: str, spec: str, flag: str) -> object:
    added = "" not in sys.path and str(Path.cwd()) not in sys.path
    if added:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        parts = module.split(".")
        if exc.name not in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
            raise _import_failed(spec, exc) from exc  # the module exists; something it imports does not
        raise ConfigError(
            flag,
            spec,
            f"no module named {exc.name!r} (searched the current folder and sys.path). Fix: run from the "
            f"folder that holds it, or give the file: path/to/{module.split('.')[-1]}.py:{spec.rpartition(':')[2]}",
        ) from None
    except Exception as exc:
        raise _import_failed(spec, exc) from exc
    finally:
        if added:
            sys.path.remove(str(Path.cwd()))


def _load_file(path: Path, spec: str, flag: str) -> object:
    if not path.is_file():
        raise ConfigError(flag, spec, f"there is no file {path}. Fix: give the path of a .py file, then :NAME")
    resolved = path.resolve()
    # a private name: a file called torch.py or test.py must not shadow the real module
    name = f"mlplab_own_{resolved.stem}_{sha256(str(resolved).encode()).hexdigest()[:8]}"
    module_spec = importlib.util.spec_from_file_location(name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(flag, spec, f"{path} cannot be loaded as Python. Fix: give a .py file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickle look a class's module up here
    sys.path.insert(0, str(resolved.parent))
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise _import_failed(spec, exc) from exc
    finally:
        sys.path.remove(str(resolved.parent))
    return module


def _import_failed(spec: str, exc: BaseException) -> OwnModelError:
    return OwnModelError(
        f"importing {spec.rpartition(':')[0]} (for {spec}) raised {type(exc).__name__}: {_first_line(exc)}"
        f"{_where(exc)}. Fix: run that file with python to see the full error, then try again."
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


_NOT_YOURS = (str(Path(__file__).resolve().parents[1]), "site-packages", "dist-packages", "<frozen")


def _where(exc: BaseException) -> str:
    """`` (at file.py, line 12, in fit)``: the innermost frame of the traceback in the learner's
    code (not in mlplab or an installed library), or the innermost frame of all."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    yours = [f for f in frames if not any(part in f.filename for part in _NOT_YOURS)]
    last = (yours or frames)[-1]
    return f" (at {Path(last.filename).name}, line {last.lineno}, in {last.name})"


# --------------------------------------------------------------------------------------------
# Fresh objects for every fit
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """How every fit gets a fresh object (regressor or preprocessor) from what the learner gave.

    Attributes
    ----------
    obj : object
        What the learner gave.
    kind : {"instance", "class", "function", "network"}
        ``instance``: copied (``sklearn.base.clone`` when it has ``get_params``, else
        ``copy.deepcopy``); ``class``/``function``: called without arguments; ``network``: an
        ``nn.Module`` factory, wrapped in a :class:`TorchRegressor`.
    label : str
        How messages name it (``my_house.py:mlp``, ``Ridge``).
    """

    obj: object
    kind: Literal["instance", "class", "function", "network"]
    label: str

    def build(self, seed: int | None = None) -> object:
        """A fresh object; ``seed`` fills every ``random_state`` parameter that is ``None``."""
        if self.kind == "network":
            from mlplab.house.torch_regressor import TorchRegressor

            made: object = TorchRegressor(self.obj)  # type: ignore[arg-type]
        elif self.kind == "instance":
            made = _fresh_copy(self.obj)
        else:
            try:
                made = self.obj()  # type: ignore[operator]
            except Exception as exc:
                raise OwnModelError(
                    f"{self.label}() raised {type(exc).__name__}: {_first_line(exc)}{_where(exc)}. Fix: make it "
                    "callable without arguments, or pass an instance"
                ) from exc
        return _seeded(made, seed) if seed is not None else made


def _fresh_copy(obj: object) -> object:
    if callable(getattr(obj, "get_params", None)):
        from sklearn.base import clone

        try:
            return clone(obj)
        except Exception:  # a get_params that clone cannot rebuild from: copy it instead
            pass
    return copy.deepcopy(obj)


def _seeded(obj: object, seed: int) -> object:
    """``obj`` with each ``random_state`` parameter (nested ones too) that is ``None`` set to ``seed``."""
    get_params, set_params = getattr(obj, "get_params", None), getattr(obj, "set_params", None)
    if not (callable(get_params) and callable(set_params)):
        return obj
    try:
        params = get_params(deep=True)
    except TypeError:
        params = get_params()
    unset = {k: seed for k, v in params.items() if (k == "random_state" or k.endswith("__random_state")) and v is None}
    if unset:
        set_params(**unset)
    return obj


def _missing(obj: object, methods: tuple[str, ...]) -> list[str]:
    return [m for m in methods if not callable(getattr(obj, m, None))]


def _describe(obj: object) -> str:
    """How messages name an object: ``module.qualname`` of a class or function, else a short repr."""
    if inspect.isclass(obj) or inspect.isfunction(obj):
        module = getattr(obj, "__module__", "") or ""
        return obj.__qualname__ if module in ("__main__", "builtins") else f"{module}.{obj.__qualname__}"
    text = repr(obj)
    if text.startswith("<") and " object at 0x" in text:  # object's own repr: the address says nothing
        return f"{type(obj).__qualname__} object"
    return text if len(text) <= 60 else text[:57] + "..."


def _required_positional(func: Callable) -> int | None:
    """Parameters a call must fill positionally, or None when the signature cannot be read."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds and p.default is inspect.Parameter.empty for p in params)


def regressor_recipe(obj: object, label: str, flag: str = "model") -> Recipe:
    """A :class:`Recipe` for the learner's regressor or network, checked before any fitting.

    Raises
    ------
    ConfigError
        ``obj`` is none of the kinds of :data:`WHAT_A_MODEL_IS` (the message says which method is
        missing, or that an ``nn.Module`` instance needs to be a factory).
    """
    from torch import nn

    methods = ("fit", "predict")
    if isinstance(obj, nn.Module):
        raise ConfigError(
            flag,
            label,
            f"it is an nn.Module instance ({type(obj).__name__}); pass a factory instead: the class, or a function "
            "def net(n_features): return nn.Sequential(...), so that every fold gets freshly initialized weights",
        )
    if inspect.isclass(obj):
        if issubclass(obj, nn.Module):
            return Recipe(obj, "network", label)
        if missing := _missing(obj, methods):
            raise ConfigError(
                flag, label, f"the class {obj.__name__} has no {' or '.join(missing)}: expected {WHAT_A_MODEL_IS}"
            )
        recipe = Recipe(obj, "class", label)
        recipe.build()  # constructible without arguments, or an error now rather than in fold 1
        return recipe
    if not _missing(obj, methods):
        recipe = Recipe(obj, "instance", label)
        try:
            recipe.build()
        except Exception as exc:
            raise ConfigError(
                flag,
                label,
                f"it cannot be copied for every fold ({type(exc).__name__}: {_first_line(exc)}); pass its class or a "
                "function without arguments that builds it",
            ) from None
        return recipe
    if any(hasattr(obj, m) for m in methods):
        missing = _missing(obj, methods)
        raise ConfigError(
            flag, label, f"it has no {' or '.join(missing)} method: a regressor needs fit(X, y) and predict(X)"
        )
    if callable(obj):
        required = _required_positional(obj)
        if required == 1:
            return Recipe(obj, "network", label)
        if required == 0:
            made = Recipe(obj, "function", label).build()
            if missing := _missing(made, methods):
                raise ConfigError(
                    flag,
                    label,
                    f"calling it returned {_describe(made)}, which has no {' or '.join(missing)}: a function "
                    "without arguments must return a regressor (a function of n_features: an nn.Module)",
                )
            return Recipe(obj, "function", label)
        raise ConfigError(
            flag,
            label,
            f"the function takes {required} arguments: a factory takes n_features (returning an nn.Module) or "
            "nothing (returning a regressor)",
        )
    raise ConfigError(flag, label, f"it has neither fit nor predict, and is not callable: expected {WHAT_A_MODEL_IS}")


def preprocess_recipe(obj: object, label: str, flag: str = "preprocess") -> Recipe:
    """A :class:`Recipe` for the learner's preprocessing: anything with ``fit(frame)`` and
    ``transform(frame)``, its class, or a function without arguments returning one."""
    methods = ("fit", "transform")
    if inspect.isclass(obj) or (callable(obj) and _missing(obj, methods) == list(methods)):
        kind: Literal["class", "function"] = "class" if inspect.isclass(obj) else "function"
        made = Recipe(obj, kind, label).build()
        if missing := _missing(made, methods):
            raise ConfigError(
                flag,
                label,
                f"what it builds has no {' or '.join(missing)}: a preprocessing needs fit(train) and transform(frame)",
            )
        return Recipe(obj, kind, label)
    if missing := _missing(obj, methods):
        raise ConfigError(
            flag,
            label,
            f"it has no {' or '.join(missing)} method: a preprocessing needs fit(train) and transform(frame) "
            "(a FeatureConfig, an object with both, its class, or a function returning one)",
        )
    recipe = Recipe(obj, "instance", label)
    try:
        recipe.build()
    except Exception as exc:
        raise ConfigError(
            flag,
            label,
            f"it cannot be copied for every fold ({type(exc).__name__}: {_first_line(exc)}); pass its class or a "
            "function without arguments that builds it",
        ) from None
    return recipe


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


def _mlp_features() -> FeatureConfig:
    """The ``mlp`` member's preprocessing options: the default for the learner's model."""
    return LINEAR_FEATURES


@dataclass
class OwnModel:
    """The learner's regressor behind a leak-free preprocessing, as a House Prices model.

    Like every model here, :meth:`fit_predict_log` fits on the training rows only and returns
    predicted ``log(price)`` for the rows to predict.

    Attributes
    ----------
    name : str
        Its row in the tables.
    regressor : Recipe
        Built afresh, seeded, for every fit.
    preprocess : Recipe or FeatureConfig
        The learner's preprocessing, or the options of a fresh :class:`HousePreprocessor`.
    outliers : OutlierRule or None
        Training rows it flags are dropped before anything is fitted (as the members drop them).
    description : str
    """

    name: str
    regressor: Recipe
    preprocess: Recipe | FeatureConfig = field(default_factory=_mlp_features)
    outliers: OutlierRule | None = field(default_factory=OutlierRule)
    description: str = ""

    def fit_predict_log(self, train: pd.DataFrame, test: pd.DataFrame, seed: int) -> np.ndarray:
        """Fit on ``train`` (kept rows) only; predicted ``log(price)`` for ``test``, shape (len(test),).

        Raises
        ------
        OwnModelError
            The preprocessing or the regressor raised an exception, or returned an array of the
            wrong shape, with NaN or infinite values (the message names which, and the fix).
        """
        if self.outliers is not None:
            train = self.outliers.keep(train)
        # fresh copies: nothing handed over shares memory with the caller's table
        fit_rows = train.reset_index(drop=True).copy(deep=True)
        features = fit_rows.drop(columns=TARGET)
        rows = test.drop(columns=TARGET, errors="ignore").reset_index(drop=True).copy(deep=True)
        target = log_target(fit_rows)
        with one_thread():
            pre = self._preprocessor()
            self._call(self._transformer, pre, "fit", fit_rows)
            X = self._matrix(self._call(self._transformer, pre, "transform", features), len(features))
            X_test = self._matrix(self._call(self._transformer, pre, "transform", rows), len(rows), X.shape[1])
            regressor = self.regressor.build(seed)
            self._call(self.name, regressor, "fit", X, target)
            z = self._predictions(self._call(self.name, regressor, "predict", X_test), len(rows))
        return log_price(z)

    def check_memoryless(
        self, train: pd.DataFrame, test: pd.DataFrame, seed: int, first_log: np.ndarray, price_log: np.ndarray
    ) -> None:
        """Refit on ``train`` and refuse the model if it now predicts ``test`` far better than it did.

        Called by :func:`mlplab.house.cross_validate` after the last fold, with the first fold's
        rows and predictions ``first_log``: by then every house of that fold has been a training
        house (in the other folds), so a model that remembers houses between fits, whatever it
        keys them by, predicts them from memory now.

        Raises
        ------
        OwnModelError
            The refit's log-RMSE is below :data:`MEMORY_FACTOR` times the first fit's.
        """
        again = self.fit_predict_log(train, test, seed)
        first = float(np.sqrt(np.mean((first_log - price_log) ** 2)))
        second = float(np.sqrt(np.mean((again - price_log) ** 2)))
        if second < MEMORY_FACTOR * first:
            raise OwnModelError(
                f"{self.name} remembers houses between fits: refitted on the first fold's training rows after all "
                f"folds, it predicts that fold's houses with log-RMSE {second:.4f} against {first:.4f} the first "
                "time, so its scores on later folds used prices it had been trained on. Fix: keep every fitted "
                "value in the object that fit() is called on (not in a module global, a class attribute or a cache)"
            )

    # -- pieces -------------------------------------------------------------------------------
    @property
    def _transformer(self) -> str:
        """How messages name the preprocessing."""
        if isinstance(self.preprocess, Recipe):
            return f"{self.name}'s preprocessing {self.preprocess.label}"
        return f"{self.name}'s HousePreprocessor"

    def _preprocessor(self) -> object:
        if isinstance(self.preprocess, FeatureConfig):
            return HousePreprocessor(self.preprocess)
        return self.preprocess.build()

    @staticmethod
    def _call(who: str, obj: object, method: str, *args: object) -> object:
        """``obj.method(*args)``; an exception of the learner's code becomes :class:`OwnModelError`."""
        try:
            return getattr(obj, method)(*args)
        except MlplabError:
            raise
        except Exception as exc:
            shapes = ", ".join(_shape_text(a) for a in args)
            raise OwnModelError(
                f"{who}: {method}({shapes}) raised {type(exc).__name__}: {_first_line(exc)}{_where(exc)}. "
                "Fix: the error is in that code (in Python, mlplab.house.cv(...) shows its whole traceback)"
            ) from exc

    def _matrix(self, out: object, rows: int, columns: int | None = None) -> np.ndarray:
        """``out`` as float64 of shape (rows, columns), finite, or an error naming what is wrong."""
        who = f"{self._transformer}: transform(frame)"
        try:
            X = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise OwnModelError(
                f"{who} returned a {type(out).__name__} that is not numeric ({_first_line(exc)}). Fix: return a "
                "numeric array or DataFrame, one row per house (encode text columns, e.g. one-hot)"
            ) from None
        if X.ndim != 2 or X.shape[0] != rows or (columns is not None and X.shape[1] != columns):
            width = "d" if columns is None else str(columns)
            same = "" if columns is None else " with as many columns as for the training houses"
            raise OwnModelError(
                f"{who} returned shape {X.shape} for {rows} houses: expected ({rows}, {width}), one row per "
                f"house{same}. Fix: return a 2-D array with the same columns for every frame"
            )
        if not np.isfinite(X).all():
            bad = np.argwhere(~np.isfinite(X))[0]
            raise OwnModelError(
                f"{who} returned {int((~np.isfinite(X)).sum())} NaN or infinite value(s) (first at row {bad[0]}, "
                f"column {bad[1]}). Fix: fill missing values in fit/transform (e.g. with training medians)"
            )
        return X

    def _predictions(self, out: object, rows: int) -> np.ndarray:
        """``out`` as float64 of shape (rows,), finite, or an error naming what is wrong."""
        who = f"{self.name}.predict(X)"
        try:
            z = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError):
            raise OwnModelError(
                f"{who} returned a {type(out).__name__}, not numbers. Fix: return an array of {rows} predicted "
                "log1p(SalePrice) values"
            ) from None
        if z.shape not in ((rows,), (rows, 1)):
            raise OwnModelError(
                f"{who} returned shape {z.shape} for X of {rows} rows: expected ({rows},) or ({rows}, 1), one "
                "predicted log1p(SalePrice) per house. Fix: predict one value per row of X"
            )
        z = z.reshape(-1)
        if not np.isfinite(z).all():
            bad = np.flatnonzero(~np.isfinite(z))
            raise OwnModelError(
                f"{who} returned {len(bad)} NaN or infinite value(s) of {rows} (first at row {bad[0]}). Fix: check "
                "that fit() converged (a smaller learning rate, scaled inputs)"
            )
        if (np.abs(z) > MAX_LOG1P_PRICE).any():
            worst = float(z[np.argmax(np.abs(z))])
            raise OwnModelError(
                f"{who} returned {worst:,.6g}, far from any log1p(SalePrice) (about 10.5 to 13.5 for Ames). Fix: "
                "fit and predict log1p(SalePrice), the y that fit(X, y) is given, not the price in dollars"
            )
        return z


def _shape_text(value: object) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    return type(value).__name__


# --------------------------------------------------------------------------------------------
# Anything -> a model
# --------------------------------------------------------------------------------------------

Model = BookBaseline | Pipeline | Ensemble | OwnModel


def as_model(
    model: object,
    *,
    preprocess: object | None = None,
    name: str | None = None,
    outliers: OutlierRule | None = OutlierRule(),  # noqa: B008 - frozen, never mutated
    flag: str = "model",
) -> Model:
    """The House Prices model that ``model`` stands for (see the module docstring).

    Parameters
    ----------
    model : str or object
        A registered name (``"mlp"``), ``"MODULE:NAME"`` (:func:`resolve`), a registered model
        object, or the learner's own regressor or network.
    preprocess : object, optional
        For the learner's model only: a :class:`FeatureConfig` (a fresh ``HousePreprocessor``
        with it), ``"MODULE:NAME"``, or an object with ``fit(train)`` and ``transform(frame)``
        (its class, or a function without arguments returning one). ``fit`` is given the
        training rows, ``SalePrice`` included; ``transform`` any rows, never with ``SalePrice``,
        and returns a numeric array of shape (rows, d). Default: the ``mlp`` member's features.
    name : str, optional
        The model's row in the tables; default the ``NAME`` of the spec, or the class or function
        name. A default that is a registered model's name gets `` (own)`` appended.
    outliers : OutlierRule or None
        Training rows to drop before fitting (default: the members' rule); ``None`` keeps them.
    flag : str
        How error messages name ``model`` (``--model`` on the command line; ``preprocess``
        becomes ``--preprocess`` then).

    Raises
    ------
    ConfigError
        An unknown name, a bad spec, an object of no usable kind, or a ``name`` already taken.
    """
    if isinstance(model, (BookBaseline, Pipeline, Ensemble, OwnModel)):
        _no_preprocess_for(model.name, preprocess)
        return model
    label = model if isinstance(model, str) else _describe(model)
    if isinstance(model, str):
        if ":" not in model:
            _no_preprocess_for(model, preprocess)
            if model not in MODELS:
                raise ConfigError(flag, model, f"one of {', '.join(MODELS)}, or your own model as {SPEC_HELP}")
            return get_model(model)
        default_name = model.rpartition(":")[2].rsplit(".", 1)[-1]
        model = resolve(model, flag)
    else:
        default_name = getattr(model, "__name__", type(model).__name__)
    if name is None:
        name = default_name if default_name not in MODELS else f"{default_name} (own)"
    elif not isinstance(name, str) or not name.strip() or name in MODELS:
        raise ConfigError("name", name, f"a name for your model that is not a registered one ({', '.join(MODELS)})")
    recipe = regressor_recipe(model, label, flag)
    pre_flag = "--preprocess" if flag.startswith("--") else "preprocess"
    pre: Recipe | FeatureConfig
    if preprocess is None:
        pre = _mlp_features()
    elif isinstance(preprocess, FeatureConfig):
        pre = preprocess
    else:
        pre_label = preprocess if isinstance(preprocess, str) else _describe(preprocess)
        pre = preprocess_recipe(
            resolve(preprocess, pre_flag) if isinstance(preprocess, str) else preprocess, pre_label, pre_flag
        )
    kind = "nn.Module, mlplab.train.fit" if recipe.kind == "network" else "regressor"
    features = "mlp's features" if isinstance(pre, FeatureConfig) else f"preprocess {pre.label}"
    return OwnModel(name, recipe, pre, outliers, f"yours: {label} ({kind}; {features})")


def _no_preprocess_for(name: str, preprocess: object | None) -> None:
    if preprocess is not None:
        raise ConfigError(
            "preprocess",
            preprocess if isinstance(preprocess, str) else _describe(preprocess),
            f"it is for your own model; {name} is a registered model with its own preprocessing",
        )
