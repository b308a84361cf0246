"""The strongest plain MLP on Fashion-MNIST: a recipe chosen on validation, tested once.

The chapter ends with "the best MLP you can build"; the study log got 0.88. This experiment
makes that claim honest:

1. a validation split of :attr:`Config.validation` images is carved from the 60,000 training
   images (a fixed permutation, seed :data:`SPLIT_SEED`); the test set is not touched;
2. every candidate recipe (:data:`RECIPES`, by name) trains on the rest over ``seeds`` seeds and
   is scored on validation (final epoch, no early stopping);
3. the recipe with the best mean validation accuracy is chosen, with paired comparisons over
   seeds against the others (which ones the data cannot tell from it);
4. only the chosen recipe's models are evaluated on the test set, once, after the choice.

Each model is one :func:`mlplab.train.fit` run with a checkpoint in
``OUT/full/runs/<recipe>-<digest>/seed<k>/``: a rerun loads finished runs instead of training
them and continues an interrupted one from its last epoch; the digest covers the recipe, the
epochs and the data, so a changed recipe is stored apart, never mixed with the old.

The recipe is named, so anyone can rerun it: ``mlplab run best-mlp`` (all candidates) or
``mlplab.experiments.best_mlp.RECIPES["adamw-2x1024"]`` from Python (the recipe validation chose
in the full run: test accuracy 0.9060 ± 0.0029 over 3 seeds, BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from mlplab.data import Data, Split
from mlplab.errors import ConfigError, check_int
from mlplab.experiments.base import (
    Conclusion,
    ExperimentConfig,
    FigureSpec,
    Result,
    best,
    classification_data,
    summary_table,
    timed,
)
from mlplab.models import ModelConfig
from mlplab.stats import mean_ci
from mlplab.train import TrainConfig

NAME = "best-mlp"
SPLIT_SEED = 0  # the permutation that carves the validation split (fixed: the same split for every recipe)
TARGET = 0.900  # mean test accuracy over the seeds that the issue asks of the chosen recipe
QUICK_EPOCHS = 4  # --quick: every recipe trains at most this many epochs on the 10k subset
QUICK_VALIDATION = 2_000
# published plain-MLP results on Fashion-MNIST, to place ours against (test accuracy)
REFERENCES = {
    "best MLP of the Fashion-MNIST benchmark table": 0.8833,
    "scikit-learn's MLPClassifier in the Fashion-MNIST paper": 0.871,
    "a hand-tuned MLP from the chapter's exercises": 0.88,
}


@dataclass(frozen=True)
class Recipe:
    """A named way to build and train an MLP: architecture plus training settings.

    ``train`` holds everything but the seed and the device, which each run sets.
    """

    name: str
    summary: str
    hidden: tuple[int, ...]
    dropout: tuple[float, ...]
    train: TrainConfig
    activation: str = "relu"
    init: str = "he"

    def model_config(self, n_inputs: int, n_outputs: int) -> ModelConfig:
        return ModelConfig(
            hidden=self.hidden,
            activation=self.activation,
            dropout=self.dropout,
            init=self.init,
            n_inputs=n_inputs,
            n_outputs=n_outputs,
        )

    def train_config(self, seed: int, device: str, epochs: int | None = None) -> TrainConfig:
        return dataclasses.replace(self.train, seed=seed, device=device, epochs=epochs or self.train.epochs)

    def describe(self) -> str:
        """One line with every setting, e.g. for a table or BENCHMARKS.md."""
        t = self.train
        parts = [
            f"{'-'.join(map(str, self.hidden))} {self.activation}, {self.init} init",
            f"dropout {','.join(f'{p:g}' for p in self.dropout) or 0}",
            f"{t.optimizer} lr {t.lr:g}" + (f" momentum {t.momentum:g}" if t.momentum else ""),
            f"weight decay {t.weight_decay:g}" + ("" if t.decay_biases else " (weights only)"),
            f"{t.schedule} schedule, batch {t.batch_size}, {t.epochs} epochs, augment {t.augment}",
        ]
        return "; ".join(parts)


def _adamw(epochs: int, augment: str) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=128,
        optimizer="adamw",
        lr=1e-3,
        weight_decay=0.05,
        decay_biases=False,
        schedule="cosine",
        augment=augment,
    )


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "adamw-2x1024-flip",
            "two ReLU layers of 1024, dropout 0.3, AdamW with a cosine schedule, mirrored training images",
            (1024, 1024),
            (0.3,),
            _adamw(40, "flip"),
        ),
        Recipe(
            "adamw-2x1024",
            "the same without augmentation (what flipping adds)",
            (1024, 1024),
            (0.3,),
            _adamw(40, "none"),
        ),
        Recipe(
            "adamw-2x1024-flip+shift",
            "the same with flips and shifts by up to 2 pixels (an MLP is not shift-invariant: does it help?)",
            (1024, 1024),
            (0.3,),
            _adamw(40, "flip+shift"),
        ),
    )
}
CANDIDATES = tuple(RECIPES)


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The best-MLP search; ``--quick``: every recipe for 4 epochs on the 10k subset."""

    candidates: tuple[str, ...] = CANDIDATES  # names in RECIPES, compared on validation
    validation: int = 6_000  # images carved from the training set to choose on (--quick: 2,000)
    epochs: int | None = None  # overrides every recipe's epochs (None: each recipe's own)
    recipes: dict[str, Recipe] = field(default_factory=lambda: dict(RECIPES), compare=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "candidates", tuple(self.candidates))
        if not self.candidates:
            raise ConfigError("candidates", self.candidates, f"name one or more of {', '.join(self.recipes)}")
        for name in self.candidates:
            if name not in self.recipes:
                raise ConfigError("candidates", name, f"expected one of {', '.join(self.recipes)}")
        check_int("validation", self.validation, 1)
        if self.epochs is not None:
            check_int("epochs", self.epochs, 1)

    def to_dict(self) -> dict:
        settings = {k: v for k, v in super().to_dict().items() if k != "recipes"}
        settings["recipes"] = {name: self.recipes[name].describe() for name in self.candidates}
        return settings


def validation_split(data: Data, n_validation: int, seed: int = SPLIT_SEED) -> tuple[Data, Split]:
    """``(Data(rest of train, validation), test)``: ``n_validation`` training rows held out.

    The rows are the first ``n_validation`` of ``randperm(n_train)`` from a generator seeded with
    ``seed``; the two parts are disjoint and together are the whole training split.
    """
    n = len(data.train)
    if not 0 < n_validation < n:
        raise ConfigError("validation", n_validation, f"hold out between 1 and {n - 1} of the {n} training images")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(data.train.X.device)
    held, kept = order[:n_validation], order[n_validation:]
    pick = lambda idx: Split(data.train.X.index_select(0, idx), data.train.y.index_select(0, idx))
    return Data(pick(kept), pick(held)), data.test


def _data(config: Config) -> Data:
    if config.data == "synthetic":  # 6 x 6 "images", so that every recipe (augmentation too) runs
        from mlplab.sweep.runner import synthetic_data

        return synthetic_data(n_features=36)
    return classification_data(config)


def run_folder(config: Config, recipe: Recipe, epochs: int, n_validation: int) -> Path:
    """The folder of one recipe's runs: its name and a digest of what its models depend on."""
    what = {
        "model": dataclasses.asdict(recipe.model_config(1, 1)),
        "train": dataclasses.asdict(recipe.train_config(0, "cpu", epochs)),
        "validation": n_validation,
        "split_seed": SPLIT_SEED,
    }
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]
    return config.folder(NAME) / "runs" / f"{recipe.name}-{digest}"


def train_recipe(
    recipe: Recipe, data: Data, seed: int, folder: Path, device: str = "cpu", epochs: int | None = None,
    progress: bool = False,
):  # fmt: skip
    """Train (or load, when stored) one seed of ``recipe`` on ``data``; returns ``(model, history)``.

    ``data.test`` is what the run is scored on after every epoch: the validation split here.
    """
    from mlplab.atomic import prepare_dir, write_text
    from mlplab.models import build_mlp
    from mlplab.train import fit

    model_config = recipe.model_config(data.train.X.shape[1], data.n_outputs)
    train_config = recipe.train_config(seed, device, epochs)
    run_dir = prepare_dir(folder / f"seed{seed}", "run folder")
    settings = {
        "recipe": recipe.name,
        "model": dataclasses.asdict(model_config),
        "train": dataclasses.asdict(train_config),
    }
    write_text(run_dir / "config.json", json.dumps(settings, indent=2) + "\n")
    model = build_mlp(model_config, torch.Generator().manual_seed(seed))
    if progress:  # fit's display names the split it scores on "test": here it is the validation split
        print(f"{recipe.name}, seed {seed}: {len(data.train):,} training images; the test columns below are the "
              f"{len(data.test):,} validation images", flush=True)  # fmt: skip
    history = fit(model, data, train_config, checkpoint=run_dir / "checkpoint.pt", resume=True, progress=progress)
    return model, history


def _history_rows(recipe: str, seed: int, history) -> list[dict]:
    return [
        {"recipe": recipe, "seed": seed, "epoch": r.epoch, "train_loss": r.train_loss, "val_acc": r.test_acc}
        for r in history.records
    ]


def target_conclusion(recipe: Recipe, test_acc: dict[int, float], quick: bool = False) -> Conclusion:
    """The chosen recipe's test accuracy over seeds, against the target and the references.

    With ``quick`` (a subset and a few epochs) the target, which is judged on the full run, is not applied.
    """
    ci = mean_ci(list(test_acc.values()))
    met = None if quick else ci.mean >= TARGET
    above = [name for name, value in REFERENCES.items() if ci.mean - ci.half_width > value]
    text = (
        f"the chosen recipe {recipe.name} reaches test accuracy {ci.format()} ({ci.n} seeds: "
        + ", ".join(f"{a:.4f}" for a in test_acc.values())
        + (
            f"); --quick trains on a subset for a few epochs: the target mean >= {TARGET:.3f} is judged on the full run"
            if quick
            else f"); the target mean >= {TARGET:.3f} is {'met' if met else 'NOT met'}"
        )
    )
    if above:
        text += f"; its whole 95% CI lies above {', '.join(f'{n} ({REFERENCES[n]:.4f})' for n in above)}"
    return Conclusion(
        text,
        {"recipe": recipe.name, "mean": ci.mean, "ci": ci.half_width, "n": ci.n, "per_seed": test_acc,
         "target": TARGET, "met": met, "above": above},
        "test",
    )  # fmt: skip


def run(config: Config) -> Result:
    """Train every candidate over the seeds, choose on validation, test the chosen recipe once."""
    from mlplab.train import evaluate

    t0, settings = timed(NAME, config)
    full = _data(config)
    n_validation = QUICK_VALIDATION if config.quick else config.validation
    if config.data == "synthetic":  # a fifth of the blobs' 2,048 training rows
        n_validation = len(full.train) // 5
    data, test = validation_split(full, n_validation)

    rows, curves, models = [], [], {}
    for name in config.candidates:
        recipe = config.recipes[name]
        epochs = config.epochs or (min(QUICK_EPOCHS, recipe.train.epochs) if config.quick else recipe.train.epochs)
        folder = run_folder(config, recipe, epochs, len(data.test))
        for seed in range(config.seeds):
            model, history = train_recipe(recipe, data, seed, folder, config.device, epochs, config.progress)
            models[name, seed] = model
            final = history.final
            rows.append({"recipe": name, "seed": seed, "val_acc": final.test_acc, "train_acc": final.train_acc,
                         "train_loss": final.train_loss, "status": history.status,
                         "seconds": sum(r.seconds for r in history.records)})  # fmt: skip
            curves += _history_rows(name, seed, history)
    results = pd.DataFrame(rows)
    choice = best(results, "recipe", "val_acc")
    chosen = config.recipes[choice.values["best"]]
    # the test set, once, for the chosen recipe only: no choice is made after this
    test_acc = {seed: evaluate(models[chosen.name, seed], test.to(config.device))[1] for seed in range(config.seeds)}

    selection = summary_table(results, ["recipe"], ["val_acc", "train_acc", "seconds"])
    selection["settings"] = [config.recipes[n].describe() for n in selection["recipe"]]
    tested = pd.DataFrame(
        {"recipe": chosen.name, "seed": list(test_acc), "test_acc": list(test_acc.values()),
         "val_acc": [float(results[(results.recipe == chosen.name) & (results.seed == s)].val_acc.iloc[0])
                     for s in test_acc]}
    )  # fmt: skip
    curve_table = summary_table(pd.DataFrame(curves), ["recipe", "epoch"], ["val_acc", "train_loss"])
    conclusions = [
        Conclusion("chosen on validation (test untouched): " + choice.text, choice.values),
        target_conclusion(chosen, test_acc, quick=config.quick),
    ]
    if config.seeds < 3:
        conclusions.append(
            Conclusion(f"only {config.seeds} seed(s): the intervals are wide or undefined; use 3 or more")
        )
    return Result(
        NAME,
        settings,
        tables={"selection": selection, "runs": results, "test": tested, "curves": curve_table},
        figures=[
            FigureSpec(
                "validation",
                "curves",
                "line",
                "epoch",
                "val_acc",
                by="recipe",
                title=f"validation accuracy ({len(data.test)} held-out training images), {config.seeds} seeds",
            ),
        ],  # fmt: skip
        conclusions=conclusions,
        seconds=time.perf_counter() - t0,
    )
