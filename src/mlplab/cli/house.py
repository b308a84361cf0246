"""``mlplab house``: cross-validate House Prices models and write a Kaggle submission."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from mlplab.cli._common import console, err_console, path_option, reports_errors
from mlplab.errors import ConfigError, check_seed

if TYPE_CHECKING:  # the house package is imported when a command runs, not at start-up
    from mlplab.house import CVStudy

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Kaggle House Prices: the book's baseline, then a leak-free pipeline that competes.",
    no_args_is_help=True,
)

DATA_DIR_HELP = (
    "A folder holding train.csv/test.csv (or the book's kaggle_house_pred_*.csv), searched "
    "before $MLPLAB_DATA/house-prices and the user cache."
)
VERIFY_HELP = "Check the files' SHA-256 against the competition's (--no-verify: your own copy)."
MODEL_HELP = (
    "Your own model as MODULE:NAME (my_house.py:mlp, sklearn.linear_model:Ridge): a scikit-learn-style "
    "regressor (fit/predict; an instance, its class, or a function returning one) or an nn.Module factory "
    "(a subclass, or a function of n_features), fitted on y = log1p(SalePrice) and predicting it."
)
#: ``mlplab.house.DEFAULT_MODELS``, spelled out: importing the models would slow every command's start.
DEFAULT_MODELS = "baseline,ridge,lasso,svr,gbm,mlp,best"
PREPROCESS_HELP = (
    "Your own preprocessing for --model, as MODULE:NAME: fit(train) on the training rows, transform(frame) "
    "-> a numeric array (rows, d). Default: the mlp member's leak-free features."
)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def _load(data_dir: Path | None, verify: bool):
    from mlplab.house import load

    with _progress() as bar:
        task = bar.add_task("download", total=None, visible=False)

        def report(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total, visible=True)

        return load(data_dir, verify=verify, progress=report)


@app.command("cv")
@reports_errors
def cv(
    model: str | None = typer.Option(None, "--model", help=MODEL_HELP),
    preprocess: str | None = typer.Option(None, "--preprocess", help=PREPROCESS_HELP),
    models: str | None = typer.Option(
        None,
        "--models",
        help="Comma-separated registered models: baseline, ridge, lasso, svr, gbm, mlp, stack, best. "
        f"Default {DEFAULT_MODELS} (stack, left out, fits its weights by an inner CV: about 3x the time); "
        "with --model, baseline,best: yours against the book's baseline and mlplab's best.",
    ),
    folds: int = typer.Option(5, help="Number of shuffled folds (every row validated once)."),
    shuffles: int = typer.Option(
        1,
        "--shuffles",
        help="Fold shuffles to run, seeded --seed, --seed+1, ...: 1 is quick; use 10 before believing a "
        "difference (targets are judged on the mean over shuffles 0-9).",
    ),
    seed: int = typer.Option(0, help="Seeds the (first) fold shuffle and every model."),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    verify: bool = typer.Option(True, "--verify/--no-verify", help=VERIFY_HELP),
) -> None:
    """Cross-validate models with the strict protocol: mean log-RMSE, and paired differences to
    the book's baseline and to best.

    Shuffled K-fold over all 1,460 training houses; every statistic and every outlier rule is
    fitted on the training folds only, no validation row is ever dropped, and no model is handed
    a validation price. The "- baseline" and "- best" columns are each model's fold-by-fold
    difference to those models, mean +- 95% CI over all folds of all shuffles (negative: better).
    """
    from mlplab.house import HOUSE_MAX_SEED, as_model
    from mlplab.house.cv import MAX_SHUFFLES
    from mlplab.house.cv import cv as run_cv

    if models is None:
        models = DEFAULT_MODELS if model is None else "baseline,best"
    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names and model is None:
        raise ConfigError("--models", models, "a comma-separated list such as lasso,mlp,best")
    for name in names:
        as_model(name)  # unknown names fail before any loading or fitting
    if preprocess is not None and model is None:
        raise ConfigError("--preprocess", preprocess, "it preprocesses your --model: give one (MODULE:NAME)")
    if folds < 2:
        raise ConfigError("--folds", folds, "an integer >= 2 (5 is the protocol)")
    if not 1 <= shuffles <= MAX_SHUFFLES:
        raise ConfigError("--shuffles", shuffles, f"an integer from 1 to {MAX_SHUFFLES} (10 to decide)")
    check_seed("--seed", seed, HOUSE_MAX_SEED - shuffles + 1)
    own = (
        None
        if model is None
        else as_model(_spec("--model", model), preprocess=_spec("--preprocess", preprocess), flag="--model")
    )
    data = _load(data_dir, verify)
    study = run_cv(own, data.train, compare=names, folds=folds, shuffles=shuffles, seed=seed, progress=True)
    console.print(study_table(study))
    for line in study_verdicts(study, None if own is None else own.name):
        console.print(line, soft_wrap=True)
    console.print(f"wall time {study.seconds:.1f} s")


def _spec(flag: str, value: str | None) -> str | None:
    """A MODULE:NAME flag's value, or a ConfigError naming the flag when it has no colon."""
    if value is not None and ":" not in value:
        raise ConfigError(
            flag, value, "expected MODULE:NAME, e.g. my_house.py:mlp (a registered model goes in --models)"
        )
    return value


def study_table(study: CVStudy) -> Table:
    """The ``mlplab house cv`` table of a :class:`~mlplab.house.study.CVStudy`."""
    one = len(study.runs) == 1
    title = (
        f"House Prices, {study.folds}-fold shuffled CV ({study.shuffles_text()}), {study.n_rows} houses: "
        "log-RMSE (lower is better)"
    )
    table = Table(title=title)
    table.add_column("model", no_wrap=True)
    table.add_column("mean", justify="right", no_wrap=True)
    table.add_column("std", justify="right", no_wrap=True)
    table.add_column("folds" if one else "worst shuffle", justify="right")
    refs = study.references()
    for ref in refs:
        table.add_column(f"- {ref}", justify="right", no_wrap=True)
    table.add_column("fit s", justify="right", no_wrap=True)
    table.add_column("what")
    for name in study.names:
        spread = " ".join(f"{s:.3f}" for s in study.fold_scores(name)[0]) if one else f"{study.worst(name):.4f}"
        paired = []
        for ref in refs:
            d = study.versus(name, ref).difference
            paired.append("" if name == ref else f"{d.mean:+.4f} ± {d.half_width:.4f}")
        table.add_row(
            name,
            f"{study.mean(name):.4f}",
            f"{study.std(name):.4f}",
            spread,
            *paired,
            f"{study.seconds_of(name):.1f}",
            study.description(name),
        )
    return table


def study_verdicts(study: CVStudy, own: str | None) -> list[str]:
    """The sentences under the table: your model against each reference, and how much to trust them."""
    lines = []
    if own is not None:
        lines += [study.sentence(own, ref) + "." for ref in study.references() if ref != own]
    if lines and len(study.runs) == 1:
        lines.append(
            "One fold shuffle: a difference inside the interval, or of a few thousandths, is noise. "
            "Run --shuffles 10 before believing it."
        )
    return lines


@app.command("submit")
@reports_errors
def submit(
    model: str = typer.Option(
        "best",
        help="Model to fit: best, mlp, baseline, ridge, lasso, svr, gbm, stack, or your own as MODULE:NAME "
        "(as mlplab house cv --model takes it).",
    ),
    preprocess: str | None = typer.Option(None, "--preprocess", help=PREPROCESS_HELP),
    out: str = typer.Option(
        "runs/house/submission.csv",
        "--out",
        help="File to write (atomically); never one of "
        "the data files, and an existing file only if it is a submission (or with --force).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file that is not a submission."),
    seed: int = typer.Option(0, help="Seeds every model."),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    verify: bool = typer.Option(True, "--verify/--no-verify", help=VERIFY_HELP),
) -> None:
    """Fit a model on all training houses and write a Kaggle submission (Id,SalePrice)."""
    from mlplab.house import HOUSE_MAX_SEED, as_model, fit_predict, write_submission
    from mlplab.house.submission import check_submission_path

    chosen = as_model(model, preprocess=_spec("--preprocess", preprocess), flag="--model")
    check_seed("--seed", seed, HOUSE_MAX_SEED)
    path = path_option("--out", out)
    check_submission_path(path, force=force)  # before the minutes of fitting; inputs are checked once known
    data = _load(data_dir, verify)
    inputs = (data.train_path, data.test_path)
    check_submission_path(path, inputs, force)
    prices = fit_predict(data.train, data.test, model=chosen, seed=seed, progress=True)
    path = write_submission(path, data.test["Id"], prices, inputs=inputs, force=force)
    console.print(
        f"wrote {path}: {len(prices)} predictions by {chosen.name} "
        f"(median ${float(sorted(prices)[len(prices) // 2]):,.0f})",
        soft_wrap=True,
    )
