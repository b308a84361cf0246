"""Benchmark: the book's baseline protocol next to the strict-protocol CV of every House model.

Prints a markdown report (machine, command, tables, wall times) to stdout. Run it alone on the
machine (the numbers are wall times), e.g.::

    MLPLAB_DATA=../shared/data PYTHONPATH=src flock /tmp/mlplab-bench.lock \\
        python bench/bench_house.py --seeds 0,1,2,3,4 --confirm-seeds 5,6,7,8,9 \\
        > bench/house_results.md

The first seed is the headline (it is what ``mlplab house cv`` uses by default); further seeds
reshuffle the folds and reseed the models, to show how much the figures move. ``--confirm-seeds``
adds shuffles that were not looked at while choosing models and settings (the development
seeds are 0-4), reported in their own column::

    python bench/bench_house.py --seeds 0,1,2,3,4 --confirm-seeds 5,6,7,8,9

``--targets`` prints only what issue #17 judges, and runs nothing else: ``baseline``, ``mlp`` and
``best`` over fold shuffles 0-9 (``--shuffles``) through ``mlplab.house.cv``, each model's mean over
all shuffles and its worst shuffle, ``best - mlp`` (and ``best - baseline``) paired over all
50 folds, then the wall time of ``mlplab house cv`` (default models, one shuffle) as a process::

    MLPLAB_DATA=../shared/data PYTHONPATH=src flock /tmp/mlplab-bench.lock \\
        python bench/bench_house.py --targets
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch
from machine import cpu_name

from mlplab.cli.house import app as house_app
from mlplab.house import (
    DEFAULT_MODELS,
    book_protocol_cv,
    cross_validate,
    cv,
    get_model,
    load,
)

#: Issue #17's targets: mean log-RMSE over fold shuffles 0-9, and the wall time of `mlplab house cv`.
TARGETS = {"best": 0.1150, "mlp": 0.1180}
CV_SECONDS = 180.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated CV seeds (first: headline)")
    parser.add_argument(
        "--confirm-seeds", default="", help="comma-separated CV seeds kept out of model choice (confirmation)"
    )
    parser.add_argument("--book-seeds", type=int, default=5, help="initialization/shuffle seeds for the book protocol")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--no-cli", action="store_true", help="skip timing the `mlplab house cv` command itself")
    parser.add_argument(
        "--targets", action="store_true", help="only issue #17's figures: baseline, mlp, best over --shuffles"
    )
    parser.add_argument("--shuffles", type=int, default=10, help="fold shuffles (seeds 0..N-1) of --targets")
    args = parser.parse_args()
    if args.targets:
        targets(args.shuffles, args.data_dir, timing=not args.no_cli)
        return
    dev_seeds = [int(s) for s in args.seeds.split(",")]
    confirm_seeds = [int(s) for s in args.confirm_seeds.split(",") if s.strip()]
    seeds = dev_seeds + [s for s in confirm_seeds if s not in dev_seeds]

    header()

    t0 = time.perf_counter()
    data = load(args.data_dir)
    load_s = time.perf_counter() - t0

    print("## The book's protocol (baseline)\n")
    print(
        "Preprocessing over train+test features, linear net on raw prices, Adam lr 5, batch 64, "
        "100 epochs, contiguous 5-fold; book log-RMSE (predictions clamped to >= 1).\n"
    )
    print("| seed | avg train log-RMSE | avg valid log-RMSE | per fold (valid) | seconds |")
    print("|---|---|---|---|---|")
    vals = []
    for s in range(args.book_seeds):
        t = time.perf_counter()
        r = book_protocol_cv(data.train, data.test, seed=s)
        vals.append(r.val_mean)
        folds = " ".join(f"{v:.3f}" for v in r.val_scores)
        print(f"| {s} | {r.train_mean:.4f} | {r.val_mean:.4f} | {folds} | {time.perf_counter() - t:.1f} |")
    print(f"\nOver {args.book_seeds} seeds: valid log-RMSE {np.mean(vals):.4f} ± {np.std(vals):.4f}.\n")

    runs = {}
    for seed in seeds:
        t = time.perf_counter()
        runs[seed] = cross_validate(data.train, DEFAULT_MODELS, folds=5, seed=seed)
        runs[seed] = (runs[seed], time.perf_counter() - t)

    head, head_s = runs[seeds[0]]
    print(f"## Strict protocol (shuffled 5-fold over all {head.n_rows} rows, seed {seeds[0]})\n")
    print(
        "Every statistic fitted on training folds only; outliers dropped from training folds "
        "only; every validation row scored.\n"
    )
    print("| model | mean ± std log-RMSE | per fold | fit seconds | what |")
    print("|---|---|---|---|---|")
    for score in head.scores:
        folds = " ".join(f"{v:.3f}" for v in score.fold_scores)
        print(
            f"| {score.name} | {score.mean:.4f} ± {score.std:.4f} | {folds} | "
            f"{score.seconds:.1f} | {get_model(score.name).description} |"
        )
    print(f"\nWall time of the whole CV (all models, all folds): {head_s:.1f} s (+ {load_s:.2f} s loading the CSVs).\n")

    if len(seeds) > 1:
        print("## Other fold shuffles (mean log-RMSE per seed)\n")
        groups = [("development seeds", dev_seeds)]
        if confirm_seeds:
            print(
                f"Seeds {', '.join(map(str, dev_seeds))} are the development seeds (models and "
                f"settings were chosen on them); seeds {', '.join(map(str, confirm_seeds))} "
                "were run only after the choice, to confirm it.\n"
            )
            groups.append(("confirmation seeds", confirm_seeds))
        print(
            "| model | "
            + " | ".join(f"seed {s}" for s in seeds)
            + " | "
            + " | ".join(f"mean, {label}" for label, _ in groups)
            + " | worst seed |"
        )
        print("|---|" + "---|" * (len(seeds) + len(groups) + 1))
        for score in head.scores:
            means = {s: runs[s][0][score.name].mean for s in seeds}
            print(
                f"| {score.name} | "
                + " | ".join(f"{means[s]:.4f}" for s in seeds)
                + " | "
                + " | ".join(f"{np.mean([means[s] for s in group]):.4f}" for _, group in groups)
                + f" | {max(means.values()):.4f} |"
            )
        print("\nWall time per seed: " + ", ".join(f"{runs[s][1]:.1f} s" for s in seeds) + ".")

    print("\n## Stacking weights (fitted by inner CV inside each training fold)\n")
    print(
        "`stack` fits its member weights in every outer fold by non-negative least squares on "
        "out-of-fold predictions of an inner K-fold split of that fold's training rows; no "
        "validation row takes part. Mean weight over the folds, per seed:\n"
    )
    for name in [s.name for s in head.scores if s.weights and get_model(s.name).stack_folds]:
        members = [member.name for member in get_model(name).members]
        print(f"| {name} | " + " | ".join(members) + " |")
        print("|---|" + "---|" * len(members))
        for seed in seeds:
            w = np.mean(runs[seed][0][name].weights, axis=0)
            print(f"| seed {seed} | " + " | ".join(f"{v:.2f}" for v in w) + " |")

    if not args.no_cli:
        from typer.testing import CliRunner

        cli_args = ["cv"] + (["--data-dir", args.data_dir] if args.data_dir else [])
        t = time.perf_counter()
        result = CliRunner().invoke(house_app, cli_args, env={"COLUMNS": "120"})
        elapsed = time.perf_counter() - t
        print(f"\n## `mlplab house {' '.join(cli_args)}` (exit code {result.exit_code}): {elapsed:.1f} s wall time\n")
        print("```\n" + result.output.rstrip() + "\n```")


def header() -> None:
    """The report's title, machine and command."""
    print("# House Prices benchmark\n")
    print(
        f"- machine: {os.cpu_count()}-core CPU, `{cpu_name()}`; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; Python {platform.python_version()}"
    )
    print(f"- command: `{' '.join(['python', *sys.argv])}`\n")


def targets(shuffles: int, data_dir: str | None, timing: bool = True) -> None:
    """Issue #17's figures: baseline, mlp and best over ``shuffles`` fold shuffles, and the CLI's time."""
    header()
    data = load(data_dir)
    t = time.perf_counter()
    study = cv(None, data.train, compare=("baseline", "mlp", "best"), shuffles=shuffles)
    elapsed = time.perf_counter() - t
    seeds = study.seeds
    print(f"## baseline, mlp and best over fold {study.shuffles_text().replace('seed', 'shuffle')} (5 folds each)\n")
    print("| model | mean over shuffles | worst shuffle | target | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("|---|---|---|---|" + "---|" * len(seeds))
    for name in study.names:
        target = TARGETS.get(name)
        verdict = "" if target is None else f"<= {target:.4f}: {'met' if study.mean(name) <= target else 'NOT met'}"
        means = " | ".join(f"{v:.4f}" for v in study.shuffle_means(name))
        print(f"| {name} | {study.mean(name):.4f} | {study.worst(name):.4f} | {verdict} | {means} |")
    n = len(seeds) * study.folds
    print(f"\nPaired over all {n} folds (fold by fold, the same training and validation houses):\n")
    for a, b in (("best", "mlp"), ("best", "baseline"), ("mlp", "baseline")):
        d = study.versus(a, b).difference
        print(f"- {a} - {b}: {d.mean:+.4f} ± {d.half_width:.4f} (95% CI, n = {d.n}); {study.sentence(a, b)}")
    print(f"\nWall time: {elapsed:.1f} s for {len(seeds)} fold shuffle(s), {elapsed / len(seeds):.1f} s each.\n")
    if timing:
        command = [sys.executable, "-m", "mlplab", "house", "cv"] + (["--data-dir", data_dir] if data_dir else [])
        env = {**os.environ, "COLUMNS": "160"}
        t = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        seconds = time.perf_counter() - t
        within = "within" if seconds <= CV_SECONDS and result.returncode == 0 else "NOT within"
        print(
            f"## `mlplab house cv` as a process (exit code {result.returncode}): {seconds:.1f} s wall time, "
            f"{within} the {CV_SECONDS:.0f} s budget\n"
        )
        shown = result.stdout if result.returncode == 0 else result.stdout + result.stderr[-2000:]
        print("```\n" + shown.rstrip() + "\n```")


if __name__ == "__main__":
    main()
