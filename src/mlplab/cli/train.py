"""``mlplab train``: train one MLP on Fashion-MNIST and save its config, history and curves."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Optional

import typer

from mlplab.cli._common import console, on_interrupt, parse_csv, path_option, reports_errors
from mlplab.errors import ConfigError

IMPLS = ("concise", "scratch")
# Where each setting lives in config.json (section, field); section None is the top level.
SETTINGS = {
    "hidden": ("model", "hidden"),
    "activation": ("model", "activation"),
    "dropout": ("model", "dropout"),
    "init": ("model", "init"),
    "impl": (None, "impl"),
    "optimizer": ("train", "optimizer"),
    "lr": ("train", "lr"),
    "weight_decay": ("train", "weight_decay"),
    "decay_biases": ("train", "decay_biases"),
    "momentum": ("train", "momentum"),
    "schedule": ("train", "schedule"),
    "augment": ("train", "augment"),
    "batch_size": ("train", "batch_size"),
    "epochs": ("train", "epochs"),
    "seed": ("train", "seed"),
    "device": ("train", "device"),
    "precision": ("train", "precision"),
}


def _settings(given: dict, *configs: dict | None) -> dict:
    """The run's settings: each flag given, else the first of ``configs`` (in config.json's form:
    the stored run's on --resume, then the defaults) that has it."""
    out = {}
    for name, (section, key) in SETTINGS.items():
        if given[name] is not None:
            out[name] = given[name]
            continue
        for config in configs:
            place = (config or {}).get(section, {}) if section else (config or {})
            if key in place:
                value = place[key]
                out[name] = ",".join(map(str, value)) if name in ("hidden", "dropout") else value
                break
    return out


@reports_errors
def train(
    hidden: Optional[str] = typer.Option(
        None, help="Hidden layer widths, a comma list: 256 or 256,256 ('' = none). [default: 256]"
    ),
    activation: Optional[str] = typer.Option(None, help="relu, sigmoid, tanh or prelu. [default: relu]"),
    dropout: Optional[str] = typer.Option(
        None, help="Dropout after each hidden layer: one value for all, or a comma list (0.2,0.5). [default: none]"
    ),
    init: Optional[str] = typer.Option(
        None, help="Weight init: normal:STD, xavier, xavier_normal or he. [default: normal:0.01]"
    ),
    impl: Optional[str] = typer.Option(
        None,
        help="concise (torch.nn, autograd) or scratch (mlplab.scratch: backward pass by hand, SGD only). [default: concise]",
    ),
    optimizer: Optional[str] = typer.Option(None, help="sgd, adam or adamw. [default: sgd]"),
    lr: Optional[float] = typer.Option(None, help="Learning rate (> 0). [default: 0.1]"),
    weight_decay: Optional[float] = typer.Option(
        None, "--weight-decay", "--wd", help="L2 weight decay lambda (>= 0). [default: 0]"
    ),
    wd_weights_only: Optional[bool] = typer.Option(
        None, "--wd-weights-only", help="Decay weight matrices only, not biases (the book's concise version)."
    ),
    momentum: Optional[float] = typer.Option(None, help="SGD momentum in [0, 1) (sgd only). [default: 0]"),
    schedule: Optional[str] = typer.Option(
        None, help="Learning-rate schedule: constant, or cosine (annealed to 0 over the run). [default: constant]"
    ),
    augment: Optional[str] = typer.Option(
        None, help="Training-image augmentation: none, flip, shift (by up to 2 pixels) or flip+shift. [default: none]"
    ),
    batch_size: Optional[int] = typer.Option(None, help="Mini-batch size. [default: 256]"),
    epochs: Optional[int] = typer.Option(
        None, help="Passes over the 60,000 training images; with --resume, the new total. [default: 10]"
    ),
    seed: Optional[int] = typer.Option(
        None, help="Seed for the initial weights, batch order and dropout masks. [default: 0]"
    ),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N or mps. [default: cpu]"),
    precision: Optional[str] = typer.Option(
        None,
        help="fp32, or bf16: matrix products in bfloat16 (torch.autocast), weights in float32; several "
        "times faster where the CPU has AVX-512 BF16 or on a GPU's tensor cores (--impl concise). [default: fp32]",
    ),
    cuda_graphs: bool = typer.Option(
        False,
        "--cuda-graphs",
        help="CUDA only: replay each full-batch step from a CUDA graph (one launch instead of dozens; the same "
        "numbers). For the concise model trained by sgd without momentum on a constant schedule.",
    ),
    out: Optional[str] = typer.Option(
        None,
        help="Folder for config.json, history.json/.csv, curves.png, checkpoint.pt [default: runs/train-DATE-TIME].",
    ),
    resume: bool = typer.Option(
        False,
        help="Continue the run stored in --out from its last finished epoch, with its settings "
        "from config.json (give --epochs to train longer, --device to continue on another device).",
    ),
    data_dir: Optional[Path] = typer.Option(
        None, help="Folder with the Fashion-MNIST IDX files (default: search, then download)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Train even when `mlplab doctor` finds an error in the settings (e.g. 1 - lr*wd <= 0)."
    ),
) -> None:
    """Train an MLP on Fashion-MNIST (the chapter's 784-256-10 network by default).

    Prints a table row per epoch and writes OUT/config.json, history.json, history.csv and
    curves.png; OUT/checkpoint.pt after every epoch lets --resume continue an interrupted run:
    `mlplab train --out DIR --resume --epochs 20` continues DIR's run, with its own settings, to 20 epochs.
    """
    import torch  # the library is imported here, not at the top, so `mlplab --help` starts fast

    from mlplab.data import fashion_mnist_data
    from mlplab.doctor import PROBE_ROWS, DoctorCallback, check, refuse_errors
    from mlplab.models import ModelConfig, build_mlp
    from mlplab.progress import epoch_progress
    from mlplab.resources import check_fits, mlp_training_bytes
    from mlplab.runs import RunDir
    from mlplab.scratch import MLP
    from mlplab.train import TrainConfig, check_graphable, fit, make_optimizer, resolve_device

    given = dict(
        hidden=hidden,
        activation=activation,
        dropout=dropout,
        init=init,
        impl=impl,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        decay_biases=None if wd_weights_only is None else not wd_weights_only,
        momentum=momentum,
        schedule=schedule,
        augment=augment,
        batch_size=batch_size,
        epochs=epochs,
        seed=seed,
        device=device,
        precision=precision,
    )
    out_dir = path_option("--out", out)
    if resume and out_dir is None:
        raise ConfigError("--resume", True, "give the run's folder with --out DIR")
    stored = RunDir(out_dir).stored_config() if resume else None
    defaults = {
        "impl": IMPLS[0],
        "model": dataclasses.asdict(ModelConfig()),
        "train": dataclasses.asdict(TrainConfig()),
    }
    settings = _settings(given, stored, defaults)
    impl, batch_size, seed, optimizer = (
        settings["impl"],
        settings["batch_size"],
        settings["seed"],
        settings["optimizer"],
    )
    model_cfg = ModelConfig(
        hidden=parse_csv("--hidden", settings["hidden"], int, "widths are integers >= 1, e.g. 256,256"),
        activation=settings["activation"],
        dropout=parse_csv("--dropout", settings["dropout"], float, "probabilities in [0, 1), e.g. 0.2,0.5"),
        init=settings["init"],
    )
    train_cfg = TrainConfig(
        **{
            k: settings[k]
            for k in (
                "epochs",
                "batch_size",
                "optimizer",
                "lr",
                "weight_decay",
                "decay_biases",
                "momentum",
                "schedule",
                "augment",
                "seed",
                "device",
                "precision",
            )  # fmt: skip
        }
    )
    findings = check(model_cfg, train_cfg)  # the doctor's config checks: milliseconds, before any work
    for finding in findings:
        console.print(
            f"[{'bold red' if finding.severity == 'error' else 'yellow'}]doctor[/]: {finding}", soft_wrap=True
        )
    if not force:
        refuse_errors(findings, "mlplab train")
    if impl not in IMPLS:
        raise ConfigError("--impl", impl, f"expected one of {', '.join(IMPLS)}")
    out = out_dir or Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")
    config = {"impl": impl, "model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(train_cfg)}
    resolve_device(train_cfg.device)  # fail before any work when the device is missing
    check_fits(
        f"an MLP {'-'.join(map(str, model_cfg.sizes))} trained in batches of {batch_size}",
        mlp_training_bytes(model_cfg.sizes, batch_size, optimizer),
        train_cfg.device,
        "use narrower --hidden layers or a smaller --batch-size",
    )
    generator = torch.Generator().manual_seed(seed)
    if impl == "scratch":
        net = MLP(model_cfg.sizes, model_cfg.activation, model_cfg.dropout_per_layer, model_cfg.init, generator)
    else:
        net = build_mlp(model_cfg, generator)
    optimizer = make_optimizer(net, train_cfg)  # rejects what this implementation cannot train (scratch + adam)
    if cuda_graphs:  # what a captured step cannot replay, before any work
        check_graphable(net, optimizer, train_cfg, resolve_device(train_cfg.device), field="--cuda-graphs")
    with RunDir(out).open(resume) as run:  # locked before any work: a second train on --out is refused at once
        if resume:
            run.check_resume(config, train_cfg)
            before = (stored or {}).get("train", {}).get("device")
            if before not in (None, train_cfg.device):
                console.print(f"resuming on {train_cfg.device}: the run was last started on {before}")
        if impl == "scratch":
            saved = net.saved_bytes_per_sample()
            console.print(
                f"scratch MLP: the forward pass keeps {saved:,} bytes per example for the backward pass "
                f"({saved * batch_size / 2**20:.2f} MiB per batch of {batch_size}); prediction keeps none"
            )
        with console.status("loading Fashion-MNIST"):
            data = fashion_mnist_data(data_dir, device=train_cfg.device)
        run.write_config(config)
        on_interrupt(run.resume_hint)
        with epoch_progress(console) as display:
            rows = data.train.X[:PROBE_ROWS], data.train.y[:PROBE_ROWS]
            watch = DoctorCallback(net, *rows, on_finding=lambda f: display.progress.console.print(
                f"[yellow]doctor[/]: {f}", soft_wrap=True))  # fmt: skip
            history = fit(
                net,
                data,
                train_cfg,
                callbacks=[display, run.writer(), watch],
                checkpoint=run.checkpoint,
                resume=resume,
                cuda_graphs=cuda_graphs,
            )
        run.finish(history, title=f"MLP {'-'.join(map(str, model_cfg.sizes))}", findings=findings + watch.findings)
    final = history.final
    acc = f"test accuracy {final.test_acc:.4f}" if final.test_acc is not None else f"test loss {final.test_loss:.4f}"
    total = sum(r.seconds for r in history.records)
    style = "green" if history.status == "ok" else "bold red"
    console.print(f"[{style}]{history.status}[/]: {acc} after {final.epoch} epochs ({total:.1f} s); wrote {out}/")
