"""What a sweep trains: fixed hyperparameters, grid axes, random axes and seeds.

A :class:`SweepSpec` expands to a list of :class:`Trial` (one model configuration and one seed)
in a fixed order: seeds outermost, then grid points (the first axis varies slowest), then random
samples. Specs come from flags (``--grid dropout1=0:0.9:0.1``), from a TOML file, or from Python.

Hyperparameter names, what each sets, its default and its text form are listed once, in
:data:`mlplab.sweep.hyperparameters.HYPERPARAMETERS` (``docs/sweep.md`` shows the table); this
module reads each value by its entry's kind (:data:`_READERS`) and checks it with the config's
own validation, so a grid value is refused with the message ``TrainConfig`` would give.
Text forms: ``hidden`` as ``256-256`` (``--hidden`` takes 256,256), ``init`` as ``normal:0.01``,
``xavier``, ``xavier_normal`` or ``he``, ``decay_biases`` as ``true`` / ``false``.

Grid values: ``NAME=START:STOP:STEP`` (both ends included, numeric names only) or
``NAME=v1,v2,...``. Random axes: ``NAME=uniform:LOW:HIGH``, ``NAME=loguniform:LOW:HIGH``
(numeric names) or ``NAME=v1,v2,...`` (a uniform choice), drawn ``samples`` times from
``numpy.random.default_rng(search_seed)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package (a dependency there)
    import tomli as tomllib

import numpy as np

from mlplab.atomic import describe_os_error
from mlplab.errors import MAX_SEED, ConfigError, check_int, check_seed
from mlplab.models import ModelConfig, parse_init
from mlplab.sweep.hyperparameters import ALIASES, AXIS_NAMES, HYPERPARAMETERS, PER_LAYER, PER_LAYER_RE, Hyperparameter
from mlplab.sweep.hyperparameters import value_text as _value_text
from mlplab.train import TrainConfig

# A guard against a typo such as 0:1:0.00001 or --seeds 1000000000000 expanding to millions of
# models: no sweep may hold more trials (and no count of seeds, samples or models per group is larger).
MAX_TRIALS = 100_000
MAX_CONFIG_BYTES = 2**20  # a sweep file is a few lines; a larger --config is a wrong file (or /dev/zero)


def _float(text: str) -> float:
    return float(text)


def _int(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(text)


def _hidden(text: str) -> tuple[int, ...]:
    text = text.strip()
    if text in ("", "none", "()"):
        return ()
    return tuple(_int(w) for w in re.split(r"[-x]", text))


def _choice(allowed: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        text = text.strip().lower()
        if text not in allowed:
            raise ValueError(text)
        return text

    return parse


def _init(text: str) -> str:
    return str(parse_init(text))


@dataclass(frozen=True)
class Reader:
    """How one hyperparameter is read from text and checked (the rest is in its table entry)."""

    parse: Callable[[str], Any]  # text -> value; raises ValueError on a bad item
    kind: str  # its table entry's kind: "real" and "int" allow START:STOP:STEP ranges and draws
    allowed: str  # shown in error messages
    check: Callable[[str, Any], None]  # (name, parsed value); raises ConfigError

    @property
    def numeric(self) -> bool:
        return self.kind in ("real", "int")


# text -> value and what a bad text is told, per kind of mlplab.sweep.hyperparameters.KINDS
_PARSERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "widths": (_hidden, "hidden widths joined by '-', e.g. 256-256 (a grid: 256,512-512)"),
    "init": (_init, "normal:STD, xavier, xavier_normal or he"),
    "real": (_float, "a number"),
    "int": (_int, "an integer"),
    "bool": (_bool, "true or false"),
}
_CONFIG_DEFAULTS = {"model": ModelConfig(), "train": TrainConfig()}


def _config_check(h: Hyperparameter) -> Callable[[str, Any], None]:
    """Check a value of ``h`` by building its config with it: the bounds are ModelConfig's and
    TrainConfig's own (a learning rate in (0, float32 max], a probability in [0, 1), ...)."""

    def check(name: str, value: Any) -> None:
        try:
            if h.name == PER_LAYER:  # a probability of one hidden layer
                ModelConfig(hidden=(1,), dropout=(value,))
            else:
                dataclasses.replace(_CONFIG_DEFAULTS[h.config], **{h.field: value})
        except ConfigError as exc:  # named as the sweep names it: dropout2, not dropout[0]
            raise ConfigError(name, value, exc.allowed) from None

    return check


def _reader(h: Hyperparameter) -> Reader:
    if h.kind == "choice":
        return Reader(_choice(h.choices), h.kind, f"one of {', '.join(h.choices)}", _config_check(h))
    parse, allowed = _PARSERS[h.kind]
    return Reader(parse, h.kind, allowed, _config_check(h))


_READERS: dict[str, Reader] = {h.name: _reader(h) for h in HYPERPARAMETERS}
HYPERPARAMETER_NAMES = AXIS_NAMES
# The defaults of a sweep are the library's (ModelConfig, TrainConfig) defaults (the table's, which
# tests check); ModelConfig's dropout=() (none) is p = 0 after every hidden layer, and features=None
# reads every column of the data.
DEFAULTS: dict[str, Any] = {h.name: h.default for h in HYPERPARAMETERS}


def canonical_name(name: str) -> str:
    """``weight-decay`` -> ``weight_decay``; raises ConfigError for an unknown name."""
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key in _READERS or PER_LAYER_RE.match(key):
        return key
    raise ConfigError("hyperparameter", name, f"expected one of {', '.join(HYPERPARAMETER_NAMES)}")


def _spec_of(name: str) -> Reader:
    return _READERS[PER_LAYER if PER_LAYER_RE.match(name) else name]


def parse_value(name: str, value: Any) -> Any:
    """One value of hyperparameter ``name`` from text or a TOML value, in its canonical type.

    The value is checked as ``ModelConfig``/``TrainConfig`` will check it (a learning rate in
    (0, float32 max], a probability in [0, 1), ...), so a bad grid value is refused where it is read.
    """
    spec = _spec_of(name)
    if name == "hidden" and isinstance(value, (list, tuple)):
        value = "-".join(str(v) for v in value)
    if isinstance(value, bool) and spec.kind != "bool":
        raise ConfigError(name, value, spec.allowed)
    try:
        parsed = spec.parse(str(value))
    except (ValueError, TypeError, OverflowError):  # includes parse_init's ConfigError
        raise ConfigError(name, value, spec.allowed) from None
    spec.check(name, parsed)
    return parsed


def parse_range(name: str, text: str) -> tuple[float | int, ...]:
    """``START:STOP:STEP`` with both ends included, e.g. ``0:0.9:0.1`` -> 0.0, 0.1, ..., 0.9.

    Values are rounded to 10 decimals so that 0.1 * 3 is stored as 0.3, not 0.30000000000000004.
    """
    parts = text.split(":")
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(name, text, "a range is START:STOP:STEP with numbers, e.g. 0:0.9:0.1") from None
    if not (math.isfinite(start) and math.isfinite(stop) and math.isfinite(step)) or step <= 0 or stop < start:
        raise ConfigError(name, text, "a range needs STEP > 0 and STOP >= START, e.g. 0:0.9:0.1")
    span = (stop - start) / step  # may be inf (0:1e308:1e-308): compared before it is made an int
    if not span + 1 <= MAX_TRIALS:
        raise ConfigError(name, text, f"the range has {span + 1:.3g} values; at most {MAX_TRIALS:,}")
    count = math.floor(span + 1e-9) + 1
    return tuple(parse_value(name, repr(round(start + i * step, 10))) for i in range(count))


def parse_grid_values(name: str, value: Any) -> tuple:
    """The values of one grid axis from text (``0:0.9:0.1``, ``a,b,c``) or a TOML list."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ConfigError(name, value, "a grid axis needs at least one value")
        return tuple(parse_value(name, v) for v in value)
    text = str(value).strip()
    if _spec_of(name).numeric and text.count(":") == 2:
        return parse_range(name, text)
    items = [t for t in text.split(",")]
    if not text:
        raise ConfigError(name, text, "a grid axis needs at least one value: give START:STOP:STEP or v1,v2,...")
    if any(not t.strip() for t in items):
        raise ConfigError(name, text, "an empty item: give START:STOP:STEP or a comma list v1,v2,...")
    return tuple(parse_value(name, t) for t in items)


def parse_axis(text: str) -> tuple[str, tuple]:
    """``NAME=VALUES`` (a ``--grid`` flag) -> (canonical name, values)."""
    name, eq, values = str(text).partition("=")
    if not eq:
        raise ConfigError("--grid", text, "expected NAME=START:STOP:STEP or NAME=v1,v2,..., e.g. dropout1=0:0.9:0.1")
    name = canonical_name(name)
    return name, parse_grid_values(name, values)


@dataclass(frozen=True)
class Distribution:
    """A random-search axis: ``uniform``/``loguniform`` on [low, high], or a uniform ``choice``."""

    kind: str  # uniform | loguniform | choice
    low: float = 0.0  # bounds of uniform / loguniform
    high: float = 0.0
    choices: tuple = ()  # the values of a choice

    def sample(self, rng: np.random.Generator) -> Any:
        if self.kind == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return self.choices[int(rng.integers(len(self.choices)))]

    def describe(self) -> str:
        if self.kind == "choice":
            return ",".join(map(_value_text, self.choices))
        return f"{self.kind}:{self.low:g}:{self.high:g}"


def parse_distribution(name: str, value: Any) -> Distribution:
    """``uniform:LOW:HIGH``, ``loguniform:LOW:HIGH`` or ``v1,v2,...`` (or a TOML list) for ``name``."""
    if isinstance(value, (list, tuple)):
        return Distribution("choice", choices=parse_grid_values(name, value))
    text = str(value).strip()
    kind, _, rest = text.partition(":")
    if kind in ("uniform", "loguniform"):
        if _spec_of(name).kind != "real":
            raise ConfigError(name, text, f"{kind} draws real numbers; for {name} give a list v1,v2,...")
        try:
            low, high = (float(p) for p in rest.split(":"))
        except ValueError:
            raise ConfigError(name, text, f"expected {kind}:LOW:HIGH, e.g. loguniform:0.001:1") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high) or (kind == "loguniform" and low <= 0):
            raise ConfigError(
                name, text, f"{kind} needs finite LOW < HIGH" + (" and LOW > 0" if kind == "loguniform" else "")
            )
        try:  # draws lie in [LOW, HIGH): both ends of that must be valid values
            parse_value(name, low), parse_value(name, math.nextafter(high, -math.inf))
        except ConfigError as exc:
            raise ConfigError(name, text, f"every draw must be valid: {exc.allowed}") from None
        return Distribution(kind, low, high)
    return Distribution("choice", choices=parse_grid_values(name, text))


def parse_random_axis(text: str) -> tuple[str, Distribution]:
    """``NAME=DIST`` (a ``--random`` flag) -> (canonical name, distribution)."""
    name, eq, value = str(text).partition("=")
    if not eq:
        raise ConfigError(
            "--random", text, "expected NAME=loguniform:LOW:HIGH, NAME=uniform:LOW:HIGH or NAME=v1,v2,..."
        )
    name = canonical_name(name)
    return name, parse_distribution(name, value)


@dataclass(frozen=True)
class Trial:
    """One model of a sweep: its configuration and its seed.

    The seed determines the initial weights (``build_mlp`` with ``Generator().manual_seed(seed)``),
    the mini-batch order and the dropout masks, exactly as for ``mlplab.train.fit``.
    """

    model: ModelConfig
    train: TrainConfig

    @property
    def seed(self) -> int:
        return self.train.seed

    def params(self) -> dict[str, Any]:
        """The hyperparameters as a flat dict (no seed), one ``dropoutN`` per hidden layer."""
        out: dict[str, Any] = {}
        for h in HYPERPARAMETERS:
            if h.name == PER_LAYER:
                out.update({f"{PER_LAYER}{i + 1}": float(p) for i, p in enumerate(self.model.dropout_per_layer)})
                continue
            value = getattr(self.model if h.config == "model" else self.train, h.field)
            # stored as JSON (and hashed into the key): hidden as text, real-valued ones as floats
            out[h.name] = _value_text(value) if isinstance(h.default, tuple) else _like(h.default, value)
        return out

    @property
    def key(self) -> str:
        """A stable identifier of (configuration, seed, input/output sizes): what the store indexes.

        Hyperparameters added to the table after sweeps were stored are left out at their default
        (``Hyperparameter.keyed``), so a sweep stored before keeps its keys and resumes.
        """
        params = {
            name: value
            for name, value in self.params().items()
            if not (_KEYED.get(name) == "no" or (_KEYED.get(name) == "unless-default" and value == DEFAULTS[name]))
        }
        ident = {**params, "seed": self.seed, "n_inputs": self.model.n_inputs, "n_outputs": self.model.n_outputs}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]

    def label(self, names: Sequence[str] | None = None) -> str:
        """``dropout1=0.2 dropout2=0.5 seed=0`` for the given hyperparameter names (all if None)."""
        params = self.params()
        names = list(params) if names is None else names
        return " ".join([*(f"{n}={_value_text(params[n])}" for n in names if n in params), f"seed={self.seed}"])


_KEYED = {h.name: h.keyed for h in HYPERPARAMETERS}


def _like(default: Any, value: Any) -> Any:
    """``value`` as a float where the default is one (``lr=1`` is stored as 1.0, as ``lr=1.0`` is)."""
    return float(value) if isinstance(default, float) else value


def make_trial(values: Mapping[str, Any], seed: int, n_inputs: int = 784, n_outputs: int = 10) -> Trial:
    """The :class:`Trial` for a set of hyperparameter values; one not given takes its :data:`DEFAULTS`
    value (a sweep stored before an entry joined the table trained it at its default).

    Each value sets its table entry's config field; ``dropout`` and ``dropoutN`` together give the
    per-layer dropout probabilities.
    """
    values = {**DEFAULTS, **values}  # an entry added to the table after a sweep was stored trained at its default
    hidden = tuple(values["hidden"])
    per_layer = [float(values.get(PER_LAYER, 0.0))] * len(hidden)
    for name, p in values.items():
        m = PER_LAYER_RE.match(name)
        if not m:
            continue
        layer = int(m.group(1))
        if layer > len(hidden):
            if p != 0:
                raise ConfigError(name, p, f"the model hidden={_value_text(hidden)} has {len(hidden)} hidden layer(s)")
            continue
        per_layer[layer - 1] = float(p)
    fields: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for h in HYPERPARAMETERS:
        if h.name != PER_LAYER:
            fields[h.config][h.field] = values[h.name]
    fields["model"].update(hidden=hidden, dropout=tuple(per_layer) if any(per_layer) else ())
    features = fields["model"].pop("n_inputs", None)  # the features entry: None reads every column
    model = ModelConfig(**fields["model"], n_inputs=n_inputs if features is None else features, n_outputs=n_outputs)
    return Trial(model, TrainConfig(**fields["train"], seed=seed))


@dataclass(frozen=True)
class SweepSpec:
    """Fixed values, grid axes, random axes and seeds. Validated on construction.

    Example
    -------
    >>> spec = SweepSpec(base={"hidden": (256, 256), "lr": 0.5},
    ...                  grid={"dropout1": (0.0, 0.5), "dropout2": (0.0, 0.5)}, seeds=(0, 1, 2))
    >>> len(spec.trials())
    12
    """

    base: Mapping[str, Any] = field(default_factory=dict)  # fixed hyperparameters; others: DEFAULTS
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)  # name -> values, crossed
    random: Mapping[str, Distribution] = field(default_factory=dict)  # name -> distribution
    samples: int = 10  # random draws per grid point (used when ``random`` is not empty)
    seeds: tuple[int, ...] = (0,)  # every configuration is trained once per seed
    search_seed: int = 0  # seeds the random-search draws (not the models)

    def __post_init__(self) -> None:
        base = {canonical_name(k): parse_value(canonical_name(k), v) for k, v in dict(self.base).items()}
        grid = {}
        for k, values in dict(self.grid).items():
            name = canonical_name(k)
            grid[name] = parse_grid_values(name, values)
        random = {}
        for k, dist in dict(self.random).items():
            name = canonical_name(k)
            random[name] = dist if isinstance(dist, Distribution) else parse_distribution(name, dist)
        both = sorted(set(grid) & set(random))
        if both:
            raise ConfigError("random", both[0], "a hyperparameter is either a grid axis or a random axis, not both")
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "random", random)
        if hasattr(self.seeds, "__len__") and len(self.seeds) > MAX_TRIALS:  # before copying a huge range
            raise ConfigError("seeds", f"{len(self.seeds)} seeds", f"at most {MAX_TRIALS:,} seeds per sweep")
        seeds = tuple(self.seeds)
        if not seeds:
            raise ConfigError("seeds", self.seeds, "give one or more integer seeds >= 0")
        for s in seeds:
            check_seed("seeds", s)
        if len(set(seeds)) != len(seeds):
            raise ConfigError("seeds", self.seeds, "seeds must be distinct")
        object.__setattr__(self, "seeds", seeds)
        check_int("samples", self.samples, 1, MAX_TRIALS)
        check_seed("search_seed", self.search_seed)
        n = len(seeds) * math.prod(len(v) for v in grid.values()) * (self.samples if random else 1)
        if n > MAX_TRIALS:
            raise ConfigError(
                "sweep", f"{n:,} trials", f"at most {MAX_TRIALS:,} models per sweep; shrink the grid or the seeds"
            )

    @property
    def varying(self) -> tuple[str, ...]:
        """The names of the grid and random axes, in order."""
        return (*self.grid, *self.random)

    def configurations(self) -> list[dict[str, Any]]:
        """Every hyperparameter combination (without seeds), grid-major, then random samples."""
        fixed = {**DEFAULTS, **self.base}
        points = [dict(zip(self.grid, combo)) for combo in itertools.product(*self.grid.values())]
        if not self.random:
            return [{**fixed, **p} for p in points]
        rng = np.random.default_rng(self.search_seed)
        out = []
        for p in points:
            for _ in range(self.samples):
                out.append({**fixed, **p, **{k: d.sample(rng) for k, d in self.random.items()}})
        return out

    def trials(self, n_inputs: int = 784, n_outputs: int = 10) -> list[Trial]:
        """All trials, seeds outermost (so a killed sweep has finished whole seeds first)."""
        configs = self.configurations()
        trials = [make_trial(c, s, n_inputs, n_outputs) for s in self.seeds for c in configs]
        seen: dict[str, Trial] = {}
        for t in trials:  # e.g. dropout=0.5 and dropout1=0.5 on a one-layer model
            seen.setdefault(t.key, t)
        return list(seen.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (what ``from_dict`` and TOML files read)."""
        return {
            "base": {k: _value_text(v) if isinstance(v, tuple) else v for k, v in self.base.items()},
            "grid": {k: [_value_text(v) if isinstance(v, tuple) else v for v in vs] for k, vs in self.grid.items()},
            "random": {k: d.describe() for k, d in self.random.items()},
            "samples": self.samples,
            "seeds": list(self.seeds),
            "search_seed": self.search_seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "spec") -> SweepSpec:
        """Read the structure of a TOML sweep file (see ``docs/sweep.md``).

        ``seeds`` is a count (``3`` means seeds 0, 1, 2) or a list of seeds; ``first_seed`` shifts
        a count (with a list it is an error: list the seeds themselves). Unknown keys and values of
        the wrong type are errors naming ``source`` and the key, so a typo never silently falls
        back to a default.
        """
        allowed = {"base", "grid", "random", "samples", "seeds", "first_seed", "search_seed"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(
                f"{source}: {unknown[0]}", data[unknown[0]], f"allowed keys: {', '.join(sorted(allowed))}"
            )
        for section in ("base", "grid", "random"):
            if not isinstance(data.get(section, {}), Mapping):
                raise ConfigError(f"{source}: {section}", data[section], "must be a table of NAME = VALUE")
        seeds = data.get("seeds", 1)
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            check_int(f"{source}: seeds", seeds, 1, MAX_TRIALS)  # before range() expands it
            first = data.get("first_seed", 0)
            check_seed(f"{source}: first_seed", first)
            if first + seeds - 1 > MAX_SEED:
                raise ConfigError(
                    f"{source}: first_seed", first, f"with seeds = {seeds} the last seed would pass {MAX_SEED}"
                )
            seeds = tuple(range(first, first + seeds))
        elif isinstance(seeds, list):
            if "first_seed" in data:
                raise ConfigError(
                    f"{source}: first_seed",
                    data["first_seed"],
                    "first_seed shifts a count of seeds (seeds = 3); with a list, list the seeds themselves",
                )
            if len(seeds) > MAX_TRIALS:
                raise ConfigError(f"{source}: seeds", f"{len(seeds)} seeds", f"at most {MAX_TRIALS:,} seeds per sweep")
            for s in seeds:
                check_seed(f"{source}: seeds", s)
            seeds = tuple(seeds)
        else:
            raise ConfigError(f"{source}: seeds", seeds, "a count (3) or a list of seeds ([0, 1, 2])")
        samples, search_seed = data.get("samples", 10), data.get("search_seed", 0)
        check_int(f"{source}: samples", samples, 1, MAX_TRIALS)
        check_seed(f"{source}: search_seed", search_seed)
        try:
            return cls(
                base=dict(data.get("base", {})),
                grid=dict(data.get("grid", {})),
                random=dict(data.get("random", {})),
                samples=samples,
                seeds=seeds,
                search_seed=search_seed,
            )
        except ConfigError as exc:  # name the file too: "grid.toml: lr = ..."
            raise ConfigError(f"{source}: {exc.field}", exc.value, exc.allowed) from None


def load_toml(path: str | Path) -> SweepSpec:
    """A :class:`SweepSpec` from a TOML file, e.g.::

    seeds = 3
    [base]
    hidden = [256, 256]
    lr = 0.5
    [grid]
    dropout1 = "0:0.9:0.1"
    dropout2 = [0.0, 0.5]
    """
    path = Path(path)
    try:
        if not path.exists():
            raise ConfigError("--config", str(path), "the file does not exist")
        if not path.is_file():  # a folder, or a device such as /dev/zero that never ends
            raise ConfigError("--config", str(path), "is not a regular file; give a TOML sweep file")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError("--config", str(path), f"is {path.stat().st_size:,} bytes; a sweep file is a few lines")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError("--config", str(path), f"is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError("--config", str(path), f"cannot be read: {describe_os_error(exc)}") from None
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError("--config", str(path), f"not valid TOML ({exc or 'nested too deeply'})") from None
    return SweepSpec.from_dict(data, source=str(path))
