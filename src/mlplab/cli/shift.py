"""``mlplab shift``: generate, detect and correct distribution shift on Fashion-MNIST (d2l 4.9).

``mlplab shift run`` runs the whole study; ``label``, ``covariate`` and ``concept`` run one part
with more of its settings exposed. Each writes OUT/<part>.json (the rows, as data), OUT/results.md
(the tables) and, for concept shift, OUT/concept_curves.png. A finished part is stored at once,
so ``--resume`` after an interruption reruns only what is missing.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from mlplab.cli._common import console, parse_csv, path_option, reports_errors
from mlplab.errors import ConfigError, MlplabError, check_int, check_real

if TYPE_CHECKING:
    from mlplab.shift.experiment import StudyConfig

# The library (torch, scikit-learn) is imported inside the commands, so `mlplab --help` starts
# fast; PARTS is mlplab.shift.experiment.PARTS (tests/test_cli.py checks that they match).
PARTS = ("label", "covariate", "concept")

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Distribution shift on Fashion-MNIST: label shift (BBSE, EM), covariate shift "
    "(domain-classifier weights), concept shift (fine-tune vs scratch).",
    no_args_is_help=True,
)


MAX_SEEDS = 1000  # a typo guard: a study over more seeds than this would run for weeks


def _seeds(n: int) -> tuple[int, ...]:
    check_int("--seeds", n, 1, MAX_SEEDS)
    return tuple(range(n))


def _models(text: str) -> tuple[tuple[int, ...], ...]:
    """``softmax,256,256x256`` -> ``((), (256,), (256, 256))``."""
    out = []
    for item in parse_csv("--models", text, str, "softmax or widths joined by x, e.g. softmax,256,256x128"):
        item = item.strip().lower()
        if item == "softmax":
            out.append(())
            continue
        try:
            out.append(tuple(int(w) for w in item.split("x")))
        except ValueError:
            raise ConfigError("--models", text, f"{item!r} is not softmax or widths like 256x128") from None
    return tuple(out)


def _execute(config: StudyConfig, out_text: str, resume: bool, data_dir: Optional[Path], device: str) -> None:
    """Run ``config`` into ``out``: load finished parts on --resume, store each part as it finishes."""
    from mlplab.atomic import remove_stale
    from mlplab.lock import folder_lock
    from mlplab.train import RUN_LOCK, resolve_device

    resolve_device(device)  # fail before any work when the device is missing
    out = path_option("--out", out_text)
    with folder_lock(out, RUN_LOCK, "mlplab shift"):  # one study per folder, taken before any work
        remove_stale(out)
        _execute_locked(config, out, resume, data_dir, device)


def _execute_locked(config: StudyConfig, out: Path, resume: bool, data_dir: Optional[Path], device: str) -> None:
    from mlplab.atomic import write_text
    from mlplab.data import fashion_mnist_data
    from mlplab.experiments.base import StoredParts
    from mlplab.runs import write_json
    from mlplab.shift.experiment import PartResult, part_config, run_study
    from mlplab.shift.report import concept_figure, save_figure, study_markdown

    parts = StoredParts(out)  # the experiments' mechanism: reused when the settings match, else refused
    checkpoint = out / "source.pt"
    existing = [path.name for path in [*map(parts.path, config.parts), checkpoint] if path.exists()]
    if existing and not resume:
        raise MlplabError(
            f"{out} already holds results ({', '.join(existing)}). Fix: add --resume to reuse "
            "and complete them, or pick another --out."
        )
    # a part stored with other settings is refused before any work; the matching ones are handed on
    done = {p: PartResult.from_dict(found) for p in config.parts if (found := parts.load(p, part_config(config, p)))}
    t0 = time.perf_counter()

    def progress(message: str) -> None:
        console.print(f"[dim]{time.perf_counter() - t0:7.1f}s[/] {message}", soft_wrap=True)

    def stored(result: PartResult) -> None:
        progress(f"{result.part} shift done ({result.seconds:.0f} s); wrote {parts.path(result.part)}")

    write_json(out / "config.json", dataclasses.asdict(config))
    with console.status("loading Fashion-MNIST"):
        data = fashion_mnist_data(data_dir, device=device)
    results = run_study(
        data, config, progress=progress, source_checkpoint=checkpoint, done=done, on_part=stored, parts=parts
    )
    markdown = study_markdown(results)
    write_text(out / "results.md", markdown)
    if "concept" in results:
        save_figure(concept_figure(results["concept"]), out / "concept_curves.png")
    console.print()
    console.print(markdown, markup=False, soft_wrap=True)
    console.print(f"wrote {out}/ ({time.perf_counter() - t0:.0f} s)")


COMMON_OUT = typer.Option("runs/shift", help="Folder for <part>.json, results.md, concept_curves.png, source.pt.")
COMMON_RESUME = typer.Option(False, help="Reuse the parts (and source classifier) already stored in --out.")
COMMON_DATA = typer.Option(None, help="Folder with the Fashion-MNIST IDX files (default: search, then download).")
COMMON_DEVICE = typer.Option("cpu", help="cpu, cuda, cuda:N or mps.")
COMMON_SOURCE_EPOCHS = typer.Option(10, help="Epochs of the 784-256-10 source classifier.")
COMMON_SOURCE_OPTIMIZER = typer.Option(
    "adam",
    help="Source classifier's optimizer: adam (lr 1e-3: test accuracy ~0.87) or sgd (the chapter's "
    "recipe, lr 0.1: ~0.82-0.84, less well calibrated).",
)


@app.command("run")
@reports_errors
def run(
    quick: bool = typer.Option(
        False,
        help="A smaller study: 3 seeds, fewer epochs, no MLP in covariate shift (measured 38 s on a 2-core machine, more on a busy one).",
    ),
    parts: str = typer.Option(",".join(PARTS), help="Which parts, a comma list of label, covariate, concept."),
    seeds: int = typer.Option(5, help="Seeds 0..N-1 for every part (ignored with --quick)."),
    retrain: Optional[str] = typer.Option(
        None, help="Label shift: also retrain a class-weighted MLP with this estimator's weights (e.g. bbse)."
    ),
    source_optimizer: str = COMMON_SOURCE_OPTIMIZER,
    out: str = COMMON_OUT,
    resume: bool = COMMON_RESUME,
    data_dir: Optional[Path] = COMMON_DATA,
    device: str = COMMON_DEVICE,
) -> None:
    """Run the whole distribution-shift study (label, covariate and concept shift).

    Label shift: Dirichlet(1) priors on 5,000 test images, BBSE / EM / calibrated EM weights and
    corrected accuracy. Covariate shift: brightness-selected source and target, domain-classifier
    weights, weighted vs unweighted training. Concept shift: relabeled classes, fine-tuning vs
    retraining from scratch. Prints the tables (mean ± 95% CI over seeds) and writes them to OUT.
    """
    from mlplab.shift.experiment import (
        ConceptShiftConfig,
        CovariateShiftConfig,
        LabelShiftConfig,
        SourceConfig,
        StudyConfig,
    )

    part_list = parse_csv("--parts", parts, str, ", ".join(PARTS))
    if quick:
        config = StudyConfig.quick(part_list, device, source_optimizer)
    else:
        s = _seeds(seeds)
        config = StudyConfig(
            part_list,
            SourceConfig(optimizer=source_optimizer, device=device),
            LabelShiftConfig(seeds=s),
            CovariateShiftConfig(seeds=s, device=device),
            ConceptShiftConfig(seeds=s),
        )
    if retrain is not None:
        config = dataclasses.replace(config, label=dataclasses.replace(config.label, retrain_with=retrain))
    _execute(config, out, resume, data_dir, device)


@app.command("label")
@reports_errors
def label(
    kind: str = typer.Option("dirichlet", help="dirichlet, tweak-one or knock-out."),
    alpha: float = typer.Option(1.0, help="Dirichlet concentration (smaller: stronger shift)."),
    rho: float = typer.Option(0.5, help="tweak-one: prior of the one tweaked class."),
    delta: float = typer.Option(0.8, help="knock-out: fraction of one class removed."),
    n_target: int = typer.Option(5000, help="Target images drawn from the 10,000 test images per seed (1 to 10000)."),
    seeds: int = typer.Option(5, help="Seeds 0..N-1 (one target prior and sample each)."),
    estimators: str = typer.Option(
        "bbse,bbse_soft,bbse+bcts,em,em+ts,em+bcts",
        help="METHOD[+CALIBRATION] list; methods bbse, bbse_soft, em; calibrations ts, bcts.",
    ),
    retrain: Optional[str] = typer.Option(
        None, help="Also retrain a class-weighted MLP with this estimator's weights."
    ),
    source_epochs: int = COMMON_SOURCE_EPOCHS,
    source_optimizer: str = COMMON_SOURCE_OPTIMIZER,
    out: str = typer.Option("runs/shift-label", help="Output folder."),
    resume: bool = COMMON_RESUME,
    data_dir: Optional[Path] = COMMON_DATA,
    device: str = COMMON_DEVICE,
) -> None:
    """Label shift: estimate w = q(y)/p(y) by BBSE or EM and correct the predictions."""
    from mlplab.shift.experiment import (
        LabelShiftConfig,
        SourceConfig,
        StudyConfig,
    )

    est = parse_csv("--estimators", estimators, str, "e.g. bbse,em+bcts")
    config = StudyConfig(
        ("label",),
        SourceConfig(epochs=source_epochs, optimizer=source_optimizer, device=device),
        label=LabelShiftConfig(kind, alpha, rho, delta, n_target, _seeds(seeds), est, retrain),
    )
    _execute(config, out, resume, data_dir, device)


@app.command("covariate")
@reports_errors
def covariate(
    statistic: str = typer.Option("brightness", help="Image statistic the selection depends on: brightness or ink."),
    strength: float = typer.Option(
        2.0, help="Selection strength s: source kept w.p. sigmoid(-s z), target sigmoid(+s z)."
    ),
    clip: float = typer.Option(20.0, help="Cap c on the weights (0 = no cap; >= 0)."),
    components: int = typer.Option(50, help="PCA components for the domain classifier (0 = raw pixels; >= 0)."),
    models: str = typer.Option(
        "softmax,256", help="Models to train: softmax (no hidden layer) and/or widths, e.g. 256 or 256x256."
    ),
    epochs: int = typer.Option(10, help="Adam epochs per model."),
    seeds: int = typer.Option(5, help="Seeds 0..N-1."),
    out: str = typer.Option("runs/shift-covariate", help="Output folder."),
    resume: bool = COMMON_RESUME,
    data_dir: Optional[Path] = COMMON_DATA,
    device: str = COMMON_DEVICE,
) -> None:
    """Covariate shift: domain-classifier weights beta = min(exp(h(x)) n_s/n_t, c), weighted training."""
    from mlplab.shift.experiment import (
        CovariateShiftConfig,
        StudyConfig,
    )

    check_real("--clip", clip, 0.0, what="the weight cap (0 = no cap)")
    check_int("--components", components, 0)
    config = StudyConfig(
        ("covariate",),
        covariate=CovariateShiftConfig(
            statistic,
            strength,
            clip if clip > 0 else None,
            components if components > 0 else None,
            _seeds(seeds),
            _models(models),
            epochs,
            device=device,
        ),
    )
    _execute(config, out, resume, data_dir, device)


@app.command("concept")
@reports_errors
def concept(
    n_changed: int = typer.Option(4, help="Classes whose labels are permuted (2..10)."),
    n_train: str = typer.Option("500,5000", help="Relabeled training-set sizes, a comma list."),
    epochs: int = typer.Option(10, help="Epochs for both fine-tuning and scratch."),
    seeds: int = typer.Option(5, help="Seeds 0..N-1."),
    source_epochs: int = COMMON_SOURCE_EPOCHS,
    source_optimizer: str = COMMON_SOURCE_OPTIMIZER,
    out: str = typer.Option("runs/shift-concept", help="Output folder."),
    resume: bool = COMMON_RESUME,
    data_dir: Optional[Path] = COMMON_DATA,
    device: str = COMMON_DEVICE,
) -> None:
    """Concept shift: learning curves of fine-tuning the source model vs retraining from scratch."""
    from mlplab.shift.experiment import (
        ConceptShiftConfig,
        SourceConfig,
        StudyConfig,
    )

    sizes = parse_csv("--n-train", n_train, int, "integers, e.g. 500,5000")
    config = StudyConfig(
        ("concept",),
        SourceConfig(epochs=source_epochs, optimizer=source_optimizer, device=device),
        concept=ConceptShiftConfig(n_changed, sizes, epochs, seeds=_seeds(seeds)),
    )
    _execute(config, out, resume, data_dir, device)
