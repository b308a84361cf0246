"""``mlplab house``: cross-validate House Prices models and write a Kaggle submission."""

from __future__ import annotations

from pathlib import Path

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
    models: str = typer.Option(
        "baseline,ridge,lasso,svr,gbm,mlp,best",
        "--models",
        help="Comma-separated model names: baseline, ridge, lasso, svr, gbm, mlp, stack, best "
        "(stack, not run by default, fits its weights by an inner CV: about 3x the time).",
    ),
    folds: int = typer.Option(5, help="Number of shuffled folds (every row validated once)."),
    seed: int = typer.Option(0, help="Seeds the fold shuffle and every model."),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    verify: bool = typer.Option(True, "--verify/--no-verify", help=VERIFY_HELP),
) -> None:
    """Cross-validate models with the strict protocol and print mean +- std log-RMSE per model.

    Shuffled K-fold over all 1,460 training houses; every statistic and every outlier rule is
    fitted on the training folds only, and no validation row is ever dropped.
    """
    from mlplab.house import HOUSE_MAX_SEED, cross_validate, get_model

    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise ConfigError("--models", models, "a comma-separated list such as lasso,mlp,best")
    for name in names:
        get_model(name)  # unknown names fail before any loading or fitting
    if folds < 2:
        raise ConfigError("--folds", folds, "an integer >= 2 (5 is the protocol)")
    check_seed("--seed", seed, HOUSE_MAX_SEED)
    data = _load(data_dir, verify)
    result = cross_validate(data.train, names, folds=folds, seed=seed, progress=True)
    table = Table(title=f"House Prices, {folds}-fold shuffled CV (seed {seed}), {result.n_rows} houses: log-RMSE")
    table.add_column("model")
    table.add_column("mean", justify="right")
    table.add_column("std", justify="right")
    table.add_column("folds", justify="right")
    table.add_column("fit s", justify="right")
    table.add_column("what")
    for score in result.scores:
        table.add_row(
            score.name,
            f"{score.mean:.4f}",
            f"{score.std:.4f}",
            " ".join(f"{s:.3f}" for s in score.fold_scores),
            f"{score.seconds:.1f}",
            get_model(score.name).description,
        )
    console.print(table)
    console.print(f"wall time {result.seconds:.1f} s")


@app.command("submit")
@reports_errors
def submit(
    model: str = typer.Option("best", help="Model to fit: best, mlp, baseline, ridge, lasso, svr, gbm, stack."),
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
    from mlplab.house import HOUSE_MAX_SEED, fit_predict, get_model, write_submission
    from mlplab.house.submission import check_submission_path

    get_model(model)
    check_seed("--seed", seed, HOUSE_MAX_SEED)
    path = path_option("--out", out)
    check_submission_path(path, force=force)  # before the minutes of fitting; inputs are checked once known
    data = _load(data_dir, verify)
    inputs = (data.train_path, data.test_path)
    check_submission_path(path, inputs, force)
    prices = fit_predict(data.train, data.test, model=model, seed=seed, progress=True)
    path = write_submission(path, data.test["Id"], prices, inputs=inputs, force=force)
    console.print(
        f"wrote {path}: {len(prices)} predictions by {model} (median ${float(sorted(prices)[len(prices) // 2]):,.0f})",
        soft_wrap=True,
    )
