"""``mlplab sweep run|show|plot``: vectorized hyperparameter sweeps, stored and resumable."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from mlplab.cli._common import console, parse_csv, reports_errors
from mlplab.errors import MAX_SEED, ConfigError, MlplabError, check_choice, check_int, check_seed
from mlplab.sweep.hyperparameters import AXIS_NAMES, BY_NAME, HYPERPARAMETERS, Hyperparameter, default_text

# The library (torch, pandas) is imported inside the commands, so `mlplab --help` starts fast;
# these names are the library's own (tests/test_cli.py checks that they match).
DATA_SETS = ("fashion-mnist", "synthetic", "poly", "linear-200")  # mlplab.sweep.runner.DATA_SETS
METRICS = ("final_test_acc", "final_test_loss", "final_train_acc", "final_train_loss")  # mlplab.sweep.results.METRICS
STATUS_FILTERS = ("all", "ok", "failed", "diverged")  # mlplab.sweep.results.STATUS_FILTERS
MAX_TRIALS = 100_000  # mlplab.sweep.spec.MAX_TRIALS

if TYPE_CHECKING:
    from mlplab.sweep.spec import SweepSpec

PLOT_FORMATS = (".png", ".svg", ".pdf")
_AXIS_NAMES = ", ".join(AXIS_NAMES)  # for --grid's help


def _fixed_help(h: Hyperparameter) -> str:
    """The help of the flag that fixes ``h``: what it means, its choices and its default."""
    text = h.meaning[0].upper() + h.meaning[1:] + "."
    if h.choices:
        text = f"{', '.join(h.choices[:-1])} or {h.choices[-1]}. {text}"
    if h.kind == "widths":
        text += " A comma list, 256,256 ('' = none)."
    if h.kind == "init":
        text += " normal:STD, xavier, xavier_normal or he."
    default = ",".join(map(str, h.default)) if isinstance(h.default, tuple) else default_text(h.name)
    if h.kind == "bool":
        default = h.flags[0].split("/")[0 if h.default else 1] if h.flags else default
    return f"{text} Default {default}."


# the option type of each kind of value; widths are a comma list of integers, read by _fixed_value
_OPTION_TYPES = {"widths": str, "choice": str, "init": str, "real": float, "int": int, "bool": bool}


def _fixed_options(func: Callable) -> Callable:
    """Give ``func`` (whose signature ends in ``**fixed``) one option per hyperparameter of the
    table, ``--lr``, ``--hidden``, ...: typer reads ``__signature__``, so a new table entry is a new
    flag of ``sweep run`` with no edit here."""
    signature = inspect.signature(func)
    params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    for h in HYPERPARAMETERS:
        names = h.flags or ("--" + h.name.replace("_", "-"),)
        option = typer.Option(None, *names, help=_fixed_help(h), rich_help_panel="Fixed hyperparameters")
        params.append(
            inspect.Parameter(h.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                              annotation=Optional[_OPTION_TYPES[h.kind]])
        )  # fmt: skip
    func.__signature__ = signature.replace(parameters=params)
    return func


def _fixed_value(h: Hyperparameter, value: object) -> object:
    """A fixed flag's value as the spec takes it (None: not given)."""
    if value is not None and h.kind == "widths":
        return parse_csv(h.flag, value, int, "widths are integers >= 1, e.g. 256,256")
    return value


app = typer.Typer(
    rich_markup_mode="markdown",
    help="Train whole hyperparameter grids at once (one batched model per group of same-shape "
    "models), store every result in DIR/sweep.sqlite, resume, and show mean ± 95% CI over seeds.",
    no_args_is_help=True,
)


def _build_spec(
    config: Optional[Path],
    base: dict,
    grid: Sequence[str],
    random: Sequence[str],
    seeds: Optional[int],
    first_seed: Optional[int],
    samples: Optional[int],
    search_seed: Optional[int],
) -> SweepSpec:
    """The spec of ``sweep run``: the config file (if any), then the flags over it.

    Rules: each hyperparameter is given once among the flags (a fixed flag such as ``--lr``, a
    ``--grid`` or a ``--random`` axis); a flag's axis replaces the config's axis of that name.
    ``--seeds N`` trains N seeds from ``--first-seed`` (default: the config's first seed, else 0);
    ``--first-seed S`` alone keeps the number of seeds (the config's, else 1) and starts at S.
    ``--samples`` and ``--search-seed`` need a random axis. Counts are checked before anything
    is expanded (``--seeds 1000000000000`` is refused at once).
    """
    from mlplab.sweep.spec import SweepSpec, load_toml, parse_axis, parse_random_axis

    if seeds is not None:
        check_int("--seeds", seeds, 1, MAX_TRIALS)
    if first_seed is not None:
        check_seed("--first-seed", first_seed)
    if samples is not None:
        check_int("--samples", samples, 1, MAX_TRIALS)
    if search_seed is not None:
        check_seed("--search-seed", search_seed)
    spec = load_toml(config) if config is not None else SweepSpec()
    grid_axes = dict(spec.grid)
    random_axes = dict(spec.random)
    given: dict[str, str] = {}  # hyperparameter -> the flag that gave it
    for flag, texts, parse, mine, other in (
        ("--grid", grid, parse_axis, grid_axes, random_axes),
        ("--random", random, parse_random_axis, random_axes, grid_axes),
    ):
        for text in texts:
            try:
                name, value = parse(text)
            except ConfigError as exc:  # name the flag too: "--grid lr = '' is invalid: ..."
                field = exc.field if exc.field == flag else f"{flag} {exc.field}"
                raise ConfigError(field, exc.value, exc.allowed) from None
            if name in given:  # otherwise the later flag would silently replace the earlier one
                raise ConfigError(
                    flag,
                    text,
                    f"{name} is already given by {given[name]}; give each hyperparameter "
                    "one axis (a grid or a random one)",
                )
            given[name] = f"{flag} {text}"
            other.pop(name, None)
            mine[name] = value
    for name, value in base.items():
        if value is not None and name in given:
            flag = BY_NAME[name].flag
            raise ConfigError(flag, value, f"{name} is also the axis {given[name]}; give it either fixed or as an axis")
    if (samples is not None or search_seed is not None) and not random_axes:
        flag, value = ("--samples", samples) if samples is not None else ("--search-seed", search_seed)
        raise ConfigError(flag, value, "it applies to random axes only; add --random NAME=... or leave it out")
    fixed = {**spec.base, **{k: v for k, v in base.items() if v is not None}}
    if seeds is not None or first_seed is not None:
        count = seeds if seeds is not None else len(spec.seeds)
        start = first_seed if first_seed is not None else spec.seeds[0]
        if start + count - 1 > MAX_SEED:
            raise ConfigError(
                "--first-seed",
                start,
                f"with {count} seed(s) the last would be {start + count - 1}; seeds go up to {MAX_SEED}",
            )
        seed_list = tuple(range(start, start + count))
    else:
        seed_list = spec.seeds
    return SweepSpec(
        base=fixed,
        grid=grid_axes,
        random=random_axes,
        samples=samples if samples is not None else spec.samples,
        seeds=seed_list,
        search_seed=search_seed if search_seed is not None else spec.search_seed,
    )


@app.command("run")
@_fixed_options
@reports_errors
def run(
    out: str = typer.Option(
        ..., help="Sweep folder: results go to OUT/sweep.sqlite; an existing sweep there is resumed."
    ),
    config: Optional[Path] = typer.Option(
        None, help="TOML sweep file (tables base, grid, random; keys seeds, samples); flags override it."
    ),
    grid: list[str] = typer.Option(
        [],
        help="A grid axis NAME=START:STOP:STEP (inclusive) or NAME=v1,v2,... Repeatable. "
        f"Names: {_AXIS_NAMES} (hidden as {BY_NAME['hidden'].example}).",
    ),
    random: list[str] = typer.Option(
        [], help="A random axis NAME=loguniform:LOW:HIGH, NAME=uniform:LOW:HIGH or NAME=v1,v2,... Repeatable."
    ),
    samples: Optional[int] = typer.Option(
        None, help="Random draws per grid point when --random is given (default 10)."
    ),
    search_seed: Optional[int] = typer.Option(None, help="Seed of the random-search draws (default 0)."),
    seeds: Optional[int] = typer.Option(
        None,
        help=f"Train every configuration with this many seeds (default 1, at most "
        f"{MAX_TRIALS:,}), from --first-seed (default: the config's first seed, else 0).",
    ),
    first_seed: Optional[int] = typer.Option(
        None,
        help="The first seed: --seeds 3 --first-seed 10 trains seeds 10, 11, "
        "12; alone, the config's number of seeds (default 1) from there.",
    ),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or mps."),
    max_models: Optional[int] = typer.Option(
        None, help=f"Models per batched group, 1 to {MAX_TRIALS:,} (default: fit the device's cache or memory)."
    ),
    tf32: bool = typer.Option(False, help="CUDA only: TF32 matmuls (faster, ~3 significant digits per product)."),
    cuda_graphs: bool = typer.Option(
        True,
        help="CUDA only: replay each training step from a CUDA graph (same results, "
        "fewer launches); --no-cuda-graphs launches kernels one by one.",
    ),
    fused: Optional[bool] = typer.Option(
        None,
        "--fused/--no-fused",
        help="How ReLU groups trained by SGD without L1 take a step: by hand, the update inside the matrix "
        "products (--fused; the default on a CPU, where it is faster), or by autograd (--no-fused; the default "
        "elsewhere). The same results up to float rounding.",
    ),
    compiled: bool = typer.Option(
        False,
        "--compiled",
        help="The fused step's elementwise work (dropout, ReLU, the loss) as torch.compile'd kernels: implies "
        "--fused; needs a C++ compiler on a CPU, Triton on CUDA; seconds of compiling at the start.",
    ),
    data: str = typer.Option(
        "fashion-mnist",
        help="Data set: fashion-mnist; synthetic (small Gaussian blobs, for tests and demos); poly (d2l 4.4's "
        "polynomial, 20 features x^i/i!) or linear-200 (d2l 4.5's 200-feature regression), both with --loss mse.",
    ),
    data_dir: Optional[Path] = typer.Option(
        None, help="Folder with the Fashion-MNIST IDX files (default: search, then download)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Train even when `mlplab doctor` finds an error in some configurations (1 - lr*wd <= 0)."
    ),
    backend: str = typer.Option(
        "local",
        help="local (train here, group after group) or ray (each group one Ray task, stored as it finishes; "
        'needs pip install "mlplab[ray]").',
        rich_help_panel="Backend",
    ),
    address: Optional[str] = typer.Option(
        None,
        help="With --backend ray: an existing Ray cluster, auto (on one of its nodes) or ray://HEAD:10001; "
        "default: a local Ray instance sized to this machine.",
        rich_help_panel="Backend",
    ),
    cpus_per_task: Optional[int] = typer.Option(
        None,
        help="With --backend ray: CPUs each task reserves, and its torch threads (default 1).",
        rich_help_panel="Backend",
    ),
    gpus_per_task: Optional[float] = typer.Option(
        None,
        help="With --backend ray: GPUs each task reserves (default 1 with --device cuda, else 0); above 0 "
        "tasks train on cuda, a fraction shares a GPU.",
        rich_help_panel="Backend",
    ),
    **fixed: object,  # one option per hyperparameter (--lr, --hidden, ...): see _fixed_options
) -> None:
    """Train every configuration x seed of a grid or random search, one batched model per group.

    Example (the 10 x 10 dropout grid of d2l 4.6, exercise 1, 3 seeds):
    mlplab sweep run --hidden 256,256 --epochs 10 --lr 0.5 --batch-size 256 --optimizer sgd
    --init normal:0.01 --grid dropout1=0:0.9:0.1 --grid dropout2=0:0.9:0.1 --seeds 3 --out runs/dropout

    Everything is checked first (flags, config, device, the memory of the largest group); then
    OUT/sweep.lock is taken, and only then is data loaded and anything trained: a second run on
    the same folder is refused before it has done any work.
    """
    from mlplab.sweep.batched import check_step_options
    from mlplab.sweep.progress import sweep_progress
    from mlplab.sweep.runner import BACKENDS, DATA_SIZES, plan_sweep, run_sweep, sweep_data, sweep_folder, sweep_trials
    from mlplab.sweep.store import FILENAME, SweepStore, writer_lock
    from mlplab.train import check_device, resolve_device

    folder = sweep_folder(out)
    check_choice("--data", data, DATA_SETS)
    check_choice("--backend", backend, BACKENDS)
    check_device(device, "--device")
    check_step_options(fused, compiled, "--compiled")
    on_ray = backend == "ray"
    if on_ray:  # the tasks' device and resources; the workers, not this machine, must have them
        from mlplab.sweep.ray_backend import import_ray, task_resources

        task_device = _with_flags(lambda: task_resources(device, cpus_per_task, gpus_per_task)[0])
        import_ray("--backend")
    else:
        for flag, value in (
            ("--address", address),
            ("--cpus-per-task", cpus_per_task),
            ("--gpus-per-task", gpus_per_task),
        ):
            if value is not None:
                raise ConfigError(flag, value, "applies to --backend ray only: add --backend ray, or leave it out")
        task_device = resolve_device(device).type
        if compiled:  # can this machine build the kernels? (Ray's workers are asked in their tasks)
            from mlplab.sweep.fused import check_compiled_kernels

            check_compiled_kernels(task_device, "--compiled")
    if tf32 and task_device != "cuda":
        raise ConfigError("--tf32", True, "TF32 exists on NVIDIA GPUs only; use it with --device cuda")
    if max_models is not None:
        check_int("--max-models", max_models, 1, MAX_TRIALS)
    base = {h.name: _fixed_value(h, fixed[h.name]) for h in HYPERPARAMETERS}
    spec = _build_spec(config, base, grid, random, seeds, first_seed, samples, search_seed)
    if on_ray:  # the group size is planned, and its memory checked, on a worker
        trials = sweep_trials(spec, *DATA_SIZES[data][1:])
    else:
        # refuses what cannot fit
        trials, _, _ = plan_sweep(spec, *DATA_SIZES[data], resolve_device(device), max_models)
    found = _doctor(trials, DATA_SIZES[data][0], force)
    with writer_lock(folder):  # before any work; run_sweep takes it again (re-entrant)
        if (folder / FILENAME).exists() or (folder / FILENAME).is_symlink():
            SweepStore(folder, create=False).close()  # a damaged store is refused before data is loaded
        from mlplab.runs import write_json

        earlier = _earlier_training_findings(folder)  # a resumed sweep keeps what its models showed before
        before = [{**dataclasses.asdict(f), "configurations": c} for f, c in found]
        if found:  # kept beside the results: what the doctor said before the sweep trained
            write_json(folder / "doctor.json", before + earlier)
        n = len(trials)
        console.print(
            f"sweep: {n} models ({n // len(spec.seeds)} configurations x {len(spec.seeds)} seeds), "
            f"varying {', '.join(spec.varying) or 'nothing'}; results in {folder / 'sweep.sqlite'}"
        )
        with console.status(f"loading {data}"):
            dataset = sweep_data(data, data_dir)
        watch = _watch_training(console, list(spec.varying))
        if on_ray:
            console.print(
                "ray: one task per group, on "
                + (f"the cluster at {address}" if address else "a local Ray instance")
                + "; the doctor's per-epoch checks do not run in Ray workers (`mlplab doctor "
                + f"{out}` explains the stored results)",
                soft_wrap=True,
            )
        with sweep_progress(console) as display:
            report = run_sweep(
                spec,
                dataset,
                folder,
                device=device,
                max_models=max_models,
                callbacks=[display] if on_ray else [display, watch],
                tf32=tf32,
                cuda_graphs=None if cuda_graphs else False,
                fused=fused,
                compiled=compiled,
                backend=backend,
                address=address,
                cpus_per_task=cpus_per_task,
                gpus_per_task=gpus_per_task,
            )
        if watch.findings:  # and what it saw while they trained, per model, with the epoch
            during = [{**dataclasses.asdict(f), "model": t.label(), "key": t.key} for t, f in watch.findings]
            retrained = {d["key"] for d in during}
            kept = [e for e in earlier if e.get("key") not in retrained]
            write_json(folder / "doctor.json", before + kept + during)
    console.print(
        f"[green]done[/]: trained {report.trained} model(s) in {report.groups} group(s) of <= "
        f"{report.max_models} in {report.seconds:.1f} s; {report.skipped} were already stored. "
        f"See: mlplab sweep show {out}"
    )


def _with_flags(check: Callable[[], object]) -> object:
    """``check()``, its ConfigError naming the flag (``--gpus-per-task``) rather than the argument."""
    try:
        return check()
    except ConfigError as exc:
        raise ConfigError("--" + exc.field.replace("_", "-"), exc.value, exc.allowed) from None


def _earlier_training_findings(folder: Path) -> list[dict]:
    """The per-model findings an earlier run of this sweep stored in OUT/doctor.json ([] if none).

    The file is the doctor's own output, never an input: a damaged one is replaced, not a reason
    to refuse the sweep."""
    import json

    try:
        stored = json.loads((folder / "doctor.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [e for e in stored if isinstance(e, dict) and "model" in e] if isinstance(stored, list) else []


def _watch_training(out, names: Sequence[str]):
    """The doctor's checks during training (``SweepDoctorCallback``): the first model to show each
    kind of finding is printed; every model's findings go to OUT/doctor.json."""
    from mlplab.doctor import SweepDoctorCallback

    shown: set[str] = set()

    def report(trial, finding) -> None:
        if finding.check not in shown:
            shown.add(finding.check)
            out.print(f"[yellow]doctor[/] ({trial.label(names)}): {finding}", soft_wrap=True, highlight=False)

    return SweepDoctorCallback(report)


def _doctor(trials, n_train: int, force: bool) -> list:
    """The doctor's config checks over the sweep's configurations, before any work: print each kind
    of finding once with how many configurations it concerns; an error stops the sweep unless --force."""
    from mlplab.doctor import check_trials

    found, n_configs = check_trials(trials, n_train)
    for finding, count in found:
        colour = "bold red" if finding.severity == "error" else "yellow"
        console.print(f"[{colour}]doctor[/] ({count} of {n_configs} configuration(s)): {finding}", soft_wrap=True)
    errors = [(f, c) for f, c in found if f.severity == "error"]
    if errors and not force:
        finding, count = errors[0]
        raise MlplabError(f"{count} of {n_configs} configuration(s) cannot train ({finding.check}: {finding.saw}). "
                          "Fix: drop those values from the grid, or add --force to train them anyway (they will end "
                          "'failed').")  # fmt: skip
    return found


@app.command("show")
@reports_errors
def show(
    directory: str = typer.Argument(..., help="A sweep folder (holding sweep.sqlite)."),
    sort: str = typer.Option("final_test_acc", help=f"Sort by the mean of: {', '.join(METRICS)} or seconds."),
    ascending: Optional[bool] = typer.Option(
        None, "--ascending/--descending", help="Sort order (default: best first)."
    ),
    top: Optional[int] = typer.Option(None, help="Show only the first N configurations (N >= 1)."),
    csv: bool = typer.Option(
        False, "--csv", help="Print CSV, one row per (configuration, seed), instead of the table."
    ),
    status: str = typer.Option(
        "all", help="Only the models that ended ok, failed (at chance or loss rose), diverged, or all."
    ),
) -> None:
    """Print a sweep's results: mean ± 95% CI over seeds per configuration (t distribution).

    The table has a column per varying hyperparameter; --csv prints every hyperparameter and seed.
    A caution line says how many configurations have fewer than 3 seeds (their intervals are
    missing or too wide to trust).
    """
    from mlplab.sweep.results import (
        MIN_SEEDS,
        filter_status,
        fixed_value,
        format_value,
        hyperparameters,
        load_results,
        seed_caution,
        sort_summary,
        summarize,
        table_rows,
        varying,
    )
    from mlplab.sweep.runner import sweep_folder

    directory = sweep_folder(directory, "DIRECTORY")
    check_choice("--sort", sort, (*METRICS, "seconds"))
    if top is not None:
        check_int("--top", top, 1)
    check_choice("--status", status, STATUS_FILTERS)
    results = filter_status(load_results(directory), status)
    if csv:
        columns = [
            *hyperparameters(results),
            "seed",
            "final_test_acc",
            "final_test_loss",
            "final_train_acc",
            "final_train_loss",
            "status",
            "seconds",
        ]
        typer.echo(results[columns].to_csv(index=False), nl=False)
        return
    if results.empty:
        console.print(f"{directory}: no results stored yet")
        return
    summary = sort_summary(summarize(results), sort, ascending)
    caution = seed_caution(summary)  # over every configuration, not only the --top shown
    if top is not None:
        summary = summary.head(top)
    shown = varying(results)  # the fixed ones are listed once below the table
    fixed = [c for c in hyperparameters(results) if c not in shown]
    metrics = ["final_test_acc", "final_test_loss", "final_train_loss"]
    table = Table(title=f"{directory}: {len(results)} model(s), {len(summary)} configuration(s) shown")
    for c in shown:
        table.add_column(c, justify="right", no_wrap=True)
    table.add_column("seeds", justify="right", min_width=5)
    table.add_column("div.", justify="right", min_width=4)
    table.add_column("failed", justify="right", min_width=6)
    for m in metrics:
        table.add_column(m.removeprefix("final_").replace("_", " "), justify="right")  # "mean ± ci" wraps at a space
    for cells in table_rows(summary, shown, metrics):
        k = len(shown) + 1  # the diverged and failed counts, red where a seed did not learn
        cells[k : k + 2] = [f"[bold red]{c}[/]" if c != "0" else c for c in cells[k : k + 2]]
        if int(cells[k - 1]) < MIN_SEEDS:  # too few seeds for the interval to mean much
            cells[k - 1] = f"[yellow]{cells[k - 1]}[/]"
        table.add_row(*cells)
    console.print(table)
    if fixed:
        console.print(
            "fixed: " + " ".join(f"{c}={format_value(fixed_value(results, c))}" for c in fixed), soft_wrap=True
        )
    console.print(
        "mean ± half-width of the 95% confidence interval over seeds (t distribution); div. = seeds that diverged; "
        "failed = seeds that trained to the end at chance accuracy or with a loss far above its start; "
        f"{results['seconds'].sum():.1f} s of training in all ({results['seconds'].mean():.2f} s per model)",
        soft_wrap=True,
    )
    if caution is not None:
        console.print(f"[yellow]{caution}[/]", soft_wrap=True)


@app.command("plot")
@reports_errors
def plot(
    directory: str = typer.Argument(..., help="A sweep folder (holding sweep.sqlite)."),
    metric: str = typer.Option("final_test_acc", help=f"{', '.join(METRICS)} or seconds."),
    x: Optional[str] = typer.Option(None, help="Hyperparameter on the x axis (default: the varying one(s))."),
    y: Optional[str] = typer.Option(None, help="Hyperparameter on the y axis: draws a heatmap."),
    out: Optional[str] = typer.Option(
        None,
        help="Figure to write: a .png, .svg or .pdf file, or an existing folder "
        "(writes FOLDER/METRIC.png). Default DIR/METRIC.png.",
    ),
    logx: Optional[bool] = typer.Option(
        None,
        "--logx/--no-logx",
        help="Line plots: a logarithmic x axis (symlog when it shows 0), or a linear one. Default: log for lr "
        "and weight_decay when their values span more than a factor of 20.",
    ),
) -> None:
    """Draw a heatmap of a 2-D grid or lines with 95% CI bands for a 1-D sweep (means over seeds).

    A dropoutN that a shallower model lacks is not an axis: a depth sweep (--grid
    hidden=64,256,256-256) draws lines over hidden, ordered by depth, then width.
    """
    from mlplab.sweep.results import load_results, summarize
    from mlplab.sweep.runner import sweep_folder

    directory = sweep_folder(directory, "DIRECTORY")
    check_choice("--metric", metric, (*METRICS, "seconds"))
    if x is not None and x == y:
        raise ConfigError("--y", y, "must differ from --x: a heatmap needs two hyperparameters")
    path = _figure_path(out, directory, metric)
    from mlplab.plots import save_figure
    from mlplab.sweep.plots import plot_summary

    summary = summarize(load_results(directory))
    if summary.empty:
        raise ConfigError("DIRECTORY", str(directory), "the sweep has no stored results yet")
    save_figure(plot_summary(summary, metric, x, y, logx), path)
    console.print(f"wrote {path}")


def _figure_path(out: Optional[str], directory: Path, metric: str) -> Path:
    """Where ``sweep plot`` writes: ``--out`` if it is a .png/.svg/.pdf file name, FOLDER/METRIC.png
    if it names an existing folder, DIR/METRIC.png without it. Anything else is refused up front
    (matplotlib chooses the format from the suffix and would fail only after drawing)."""
    from mlplab.sweep.runner import sweep_folder

    if out is None:
        return directory / f"{metric}.png"
    path = sweep_folder(out, "--out")
    if path.is_dir():
        return path / f"{metric}.png"
    if path.suffix.lower() not in PLOT_FORMATS:
        raise ConfigError(
            "--out",
            out,
            f"a figure file ends in {', '.join(PLOT_FORMATS)} (or name an existing "
            "folder to write FOLDER/METRIC.png into it)",
        )
    return path
