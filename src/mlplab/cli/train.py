"""``mlplab train``: train one MLP on Fashion-MNIST and save its config, history and curves."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Optional

import torch
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mlplab.cli._common import console, parse_csv, path_option, reports_errors
from mlplab.data import fashion_mnist_data
from mlplab.errors import ConfigError
from mlplab.models import ModelConfig, build_mlp
from mlplab.resources import check_fits, mlp_training_bytes
from mlplab.runs import RunDir
from mlplab.scratch import MLP
from mlplab.train import Callback, EpochRecord, History, TrainConfig, fit, make_optimizer, resolve_device

IMPLS = ("concise", "scratch")
HEADER = f"{'epoch':>5}  {'train_loss':>10}  {'train_acc':>9}  {'test_loss':>9}  {'test_acc':>8}  {'seconds':>7}"


def format_record(r: EpochRecord) -> str:
    def num(v, width, digits=4):
        return f"{'-':>{width}}" if v is None else f"{v:>{width}.{digits}f}"

    return (f"{r.epoch:>5}  {num(r.train_loss, 10)}  {num(r.train_acc, 9)}  {num(r.test_loss, 9)}  "
            f"{num(r.test_acc, 8)}  {num(r.seconds, 7, 2)}")  # fmt: skip


class TerminalProgress(Callback):
    """A progress bar over batches and epochs, and a table row per finished epoch (it only draws)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = None

    def on_train_begin(self, config: TrainConfig, batches_per_epoch: int, history: History) -> None:
        total = batches_per_epoch * config.epochs
        done = batches_per_epoch * len(history.records)
        self.task = self.progress.add_task("training", total=total, completed=done)
        self.progress.console.print(HEADER)

    def on_batch_end(self, epoch: int, batch: int) -> None:
        self.progress.advance(self.task)

    def on_epoch_end(self, record: EpochRecord) -> None:
        self.progress.console.print(format_record(record))


@reports_errors
def train(
    hidden: str = typer.Option("256", help="Hidden layer widths, a comma list: 256 or 256,256 ('' = none)."),
    activation: str = typer.Option("relu", help="relu, sigmoid, tanh or prelu."),
    dropout: str = typer.Option("", help="Dropout after each hidden layer: one value for all, or a comma list (0.2,0.5)."),
    init: str = typer.Option("normal:0.01", help="Weight init: normal:STD, xavier, xavier_normal or he."),
    impl: str = typer.Option("concise", help="concise (torch.nn, autograd) or scratch (mlplab.scratch: backward pass by hand, SGD only)."),
    optimizer: str = typer.Option("sgd", help="sgd, adam or adamw."),
    lr: float = typer.Option(0.1, help="Learning rate (> 0)."),
    weight_decay: float = typer.Option(0.0, "--weight-decay", "--wd", help="L2 weight decay lambda (>= 0)."),
    wd_weights_only: bool = typer.Option(False, help="Decay weight matrices only, not biases (the book's concise version)."),
    batch_size: int = typer.Option(256, help="Mini-batch size."),
    epochs: int = typer.Option(10, help="Passes over the 60,000 training images."),
    seed: int = typer.Option(0, help="Seed for the initial weights, batch order and dropout masks."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or mps."),
    out: Optional[str] = typer.Option(None, help="Folder for config.json, history.json/.csv, curves.png, checkpoint.pt [default: runs/train-DATE-TIME]."),
    resume: bool = typer.Option(False, help="Continue the run stored in --out from its last finished epoch."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder with the Fashion-MNIST IDX files (default: search, then download)."),
) -> None:
    """Train an MLP on Fashion-MNIST (the chapter's 784-256-10 network by default).

    Prints a table row per epoch and writes OUT/config.json, history.json, history.csv and
    curves.png; OUT/checkpoint.pt after every epoch lets --resume continue an interrupted run.
    """
    model_cfg = ModelConfig(
        hidden=parse_csv("--hidden", hidden, int, "widths are integers >= 1, e.g. 256,256"),
        activation=activation,
        dropout=parse_csv("--dropout", dropout, float, "probabilities in [0, 1), e.g. 0.2,0.5"),
        init=init,
    )
    train_cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
        decay_biases=not wd_weights_only, seed=seed, device=device,
    )  # fmt: skip
    if impl not in IMPLS:
        raise ConfigError("--impl", impl, f"expected one of {', '.join(IMPLS)}")
    out = path_option("--out", out) or Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")
    config = {"impl": impl, "model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(train_cfg)}
    resolve_device(train_cfg.device)  # fail before any work when the device is missing
    check_fits(f"an MLP {'-'.join(map(str, model_cfg.sizes))} trained in batches of {batch_size}",
               mlp_training_bytes(model_cfg.sizes, batch_size, optimizer), train_cfg.device,
               "use narrower --hidden layers or a smaller --batch-size")  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    if impl == "scratch":
        net = MLP(model_cfg.sizes, model_cfg.activation, model_cfg.dropout_per_layer, model_cfg.init, generator)
    else:
        net = build_mlp(model_cfg, generator)
    make_optimizer(net, train_cfg)  # rejects what this implementation cannot train (scratch + adam)
    with RunDir(out).open(resume) as run:  # locked before any work: a second train on --out is refused at once
        if resume:
            run.check_resume(config, train_cfg)
        if impl == "scratch":
            saved = net.saved_bytes_per_sample()
            console.print(f"scratch MLP: the forward pass keeps {saved:,} bytes per example for the backward pass "
                          f"({saved * batch_size / 2**20:.2f} MiB per batch of {batch_size}); prediction keeps none")  # fmt: skip
        with console.status("loading Fashion-MNIST"):
            data = fashion_mnist_data(data_dir, device=train_cfg.device)
        run.write_config(config)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            history = fit(net, data, train_cfg, callbacks=[TerminalProgress(progress), run.writer()],
                          checkpoint=run.checkpoint, resume=resume)  # fmt: skip
        run.finish(history, title=f"MLP {'-'.join(map(str, model_cfg.sizes))}")
    final = history.final
    acc = f"test accuracy {final.test_acc:.4f}" if final.test_acc is not None else f"test loss {final.test_loss:.4f}"
    total = sum(r.seconds for r in history.records)
    style = "green" if history.status == "ok" else "bold red"
    console.print(f"[{style}]{history.status}[/]: {acc} after {final.epoch} epochs ({total:.1f} s); wrote {out}/")
