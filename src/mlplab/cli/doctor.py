"""``mlplab doctor``: the chapter's failure modes, checked from train's settings before any training."""

from __future__ import annotations

from typing import Optional

import typer

from mlplab.cli._common import console, parse_csv, path_option, reports_errors


@reports_errors
def doctor(
    directory: Optional[str] = typer.Argument(
        None, help="A run folder (mlplab train --out) or sweep folder: explain its failed models instead."
    ),
    hidden: str = typer.Option("256", help="Hidden layer widths, a comma list, as for mlplab train."),
    activation: str = typer.Option("relu", help="relu, sigmoid, tanh or prelu."),
    dropout: str = typer.Option("", help="Dropout after each hidden layer: one value or a comma list."),
    init: str = typer.Option("normal:0.01", help="normal:STD, xavier, xavier_normal or he."),
    optimizer: str = typer.Option("sgd", help="sgd, adam or adamw."),
    lr: float = typer.Option(0.1, help="Learning rate."),
    weight_decay: float = typer.Option(0.0, "--weight-decay", "--wd", help="L2 weight decay lambda."),
    batch_size: int = typer.Option(256, help="Mini-batch size."),
    n_train: int = typer.Option(60_000, help="Training examples (Fashion-MNIST: 60,000): sets the steps per epoch."),
    strict: Optional[bool] = typer.Option(
        None, "--strict", help="Exit with status 1 on warnings too, not only on errors."
    ),
    probe: bool = typer.Option(
        False,
        "--probe",
        help="Also train a copy of the model on a few batches of Fashion-MNIST: input scale, loss at init, "
        "gradients, dead ReLUs, a learning rate that raises the loss (seconds).",
    ),
    data_dir: Optional[str] = typer.Option(None, help="Folder with the Fashion-MNIST IDX files, for --probe."),
    grid: list[str] = typer.Option(
        [],
        help="A grid axis, as for `mlplab sweep run` (NAME=START:STOP:STEP or NAME=v1,v2,...): check every configuration.",
    ),
) -> None:
    """Check a training configuration for the chapter's failure modes, from the settings alone.

    Weight decay that flips or erases the weights (d2l 4.5), variance that vanishes or explodes
    through the layers (4.8), too much dropout on the first layer (4.6), a batch larger than the
    data. With --grid (as for `mlplab sweep run`), every configuration of the grid is checked and
    each kind of finding is counted. Given a run or sweep folder, explains its failed models by
    cause instead. Prints each finding with what it saw, why it matters and what to change; exits
    with status 1 when one is an error (or, with --strict, a warning).
    """
    from mlplab.doctor import check, explain
    from mlplab.errors import check_int

    if directory is not None:
        for line in explain(path_option("DIRECTORY", directory)).lines():
            console.print(line, soft_wrap=True)
        return
    from mlplab.models import ModelConfig
    from mlplab.train import TrainConfig

    check_int("--n-train", n_train, 1)
    model = ModelConfig(
        hidden=parse_csv("--hidden", hidden, int, "widths are integers >= 1, e.g. 256,256"),
        activation=activation,
        dropout=parse_csv("--dropout", dropout, float, "probabilities in [0, 1), e.g. 0.2,0.5"),
        init=init,
    )
    train = TrainConfig(optimizer=optimizer, lr=lr, weight_decay=weight_decay, batch_size=batch_size)
    if grid:
        return _check_grid(model, train, grid, n_train, strict)
    findings = check(model, train, n_train)
    if probe:
        import torch

        from mlplab.data import fashion_mnist_data
        from mlplab.doctor import probe as run_probe
        from mlplab.models import build_mlp

        with console.status("probing on a few batches of Fashion-MNIST"):
            net = build_mlp(model, torch.Generator().manual_seed(train.seed))
            findings += run_probe(net, fashion_mnist_data(data_dir), train)
    colour = {"error": "bold red", "warning": "yellow", "note": "cyan"}
    for f in findings:
        console.print(f"[{colour[f.severity]}]{f.severity}[/] ({f.check}): {f.saw}.\n  {f.why}\n  Fix: {f.fix}.",
                      soft_wrap=True)  # fmt: skip
    if not findings:
        console.print("[green]no findings[/]: nothing in these settings is known to stop training")
    failing = {"error", "warning"} if strict else {"error"}
    if any(f.severity in failing for f in findings):
        raise typer.Exit(1)


def _check_grid(model, train, grid: list[str], n_train: int, strict: Optional[bool]) -> None:
    """``mlplab doctor --grid ...``: the config checks over every configuration of the grid."""
    from mlplab.cli.sweep import _build_spec
    from mlplab.doctor import check_trials

    dropout = model.dropout_per_layer
    base = {"hidden": model.hidden, "activation": model.activation, "init": model.init,
            "dropout": dropout[0] if dropout and len(set(dropout)) == 1 else None, "optimizer": train.optimizer,
            "lr": train.lr, "weight_decay": train.weight_decay, "batch_size": train.batch_size}  # fmt: skip
    from mlplab.sweep.spec import canonical_name

    axes = {canonical_name(text.partition("=")[0]) for text in grid}  # an axis replaces the fixed flag
    if any(a.startswith("dropout") for a in axes):
        axes.add("dropout")
    fixed = {k: v for k, v in base.items() if v is not None and k not in axes}
    spec = _build_spec(None, fixed, grid, [], None, None, None, None)
    trials = spec.trials(n_inputs=model.n_inputs, n_outputs=model.n_outputs)
    found, n_configs = check_trials(trials, n_train)
    for finding, count in found:
        console.print(f"{finding.severity} ({finding.check}) in {count} of {n_configs} configuration(s), e.g.: "
                      f"{finding.saw}.\n  Fix: {finding.fix}.", soft_wrap=True)  # fmt: skip
    if not found:
        console.print(f"[green]no findings[/] in {n_configs} configuration(s)")
    failing = {"error", "warning"} if strict else {"error"}
    if any(f.severity in failing for f, _ in found):
        raise typer.Exit(1)
