"""``mlplab run NAME``: the chapter's experiments, each one command; ``mlplab run --list``.

Every experiment of :mod:`mlplab.experiments` is a subcommand with the same flags (``--quick``,
``--seeds``, ``--device``, ``--out``, ``--data-dir``), generated from the registry; the
distribution-shift study (``mlplab run shift``) is ``mlplab shift run`` under this verb.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mlplab import experiments
from mlplab.cli import shift as _shift
from mlplab.cli._common import console, on_interrupt, path_option, reports_errors

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Run one of the chapter's experiments end to end: tables, figures and conclusions computed "
    "over seeds. `mlplab run --list` lists them.",
    invoke_without_command=True,
)


@app.callback()
def main(
    ctx: typer.Context,
    list_: bool = typer.Option(False, "--list", help="List the experiments and what each answers, then exit."),
) -> None:
    """Run one of the chapter's experiments (tables, figures and conclusions over seeds)."""
    if list_:
        for name in [*experiments.names(), "shift"]:
            what = experiments.summary(name) if name != "shift" else "d2l 4.9: label, covariate and concept shift"
            console.print(f"[bold]{name:<13}[/] {what}", soft_wrap=True)
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        console.print(ctx.get_help())
        raise typer.Exit(0)


def _command(name: str):
    """The ``mlplab run NAME`` command of experiment ``name``."""

    @reports_errors
    def command(
        quick: bool = typer.Option(False, help="A first look in seconds: a 10k/5k subset and fewer epochs."),
        seeds: Optional[int] = typer.Option(
            None, help="Seeds 0..N-1 for every configuration (1 to 100). [default: 3; poly-fit: 10]"
        ),
        device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or mps."),
        out: Optional[str] = typer.Option(
            None, help=f"Results folder (default runs/{name}); a rerun reuses what is stored there."
        ),
        data_dir: Optional[str] = typer.Option(
            None, help="Folder with the Fashion-MNIST IDX files (default: search, then download)."
        ),
        synthetic: bool = typer.Option(
            False, "--synthetic", help="Train on small Gaussian blobs instead of Fashion-MNIST (a demo, seconds)."
        ),
        set_: list[str] = typer.Option(
            [], "--set", help="An experiment setting FIELD=VALUE (lists comma-separated). Repeatable; see --settings."
        ),
        show_settings: bool = typer.Option(
            False, "--settings", help="List this experiment's own settings (for --set), with defaults, then exit."
        ),
    ) -> None:
        from mlplab.experiments.base import parse_settings, settings

        module = experiments.module(name)
        if show_settings:
            for s in settings(module.Config):
                console.print(f"[bold]{s.name}[/] ({s.kind}, default {s.default_text}): {s.comment}", soft_wrap=True)
            raise typer.Exit(0)
        config = module.Config(
            **parse_settings(module.Config, set_),
            **({} if seeds is None else {"seeds": seeds}),
            quick=quick,
            device=device,
            out=str(path_option("--out", out)) if out is not None else None,
            data="synthetic" if synthetic else "fashion-mnist",
            data_dir=str(path_option("--data-dir", data_dir)) if data_dir is not None else None,
            progress=True,
        )
        on_interrupt(
            lambda: (
                f"what finished so far is stored under {config.folder(name)} (each group of models; for "
                "best-mlp, each epoch); run the same command again to train only the rest"
            )
        )
        result = module.run(config)
        folder = result.save(config.folder(name))
        console.print(f"[bold]{name}[/] ({result.seconds:.1f} s)")
        for conclusion in result.conclusions:
            console.print(f"- {conclusion}", soft_wrap=True, markup=False)
        console.print(f"tables, figures and result.md in {Path(folder)}")

    command.__doc__ = experiments.summary(name)
    return command


for _name in experiments.names():
    app.command(_name)(_command(_name))
app.command(
    "shift", help="Distribution shift study (d2l 4.9): label, covariate and concept shift; same as `mlplab shift run`."
)(_shift.run)
