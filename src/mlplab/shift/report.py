"""Tables and figures of the shift study, made from its results (never during training)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mlplab.plots import plt, save_figure
from mlplab.shift.experiment import PartResult, summarize, verdict
from mlplab.stats import MeanCI

__all__ = ["concept_figure", "concept_table", "covariate_table", "label_table", "save_figure", "study_markdown"]


def _fmt(ci: MeanCI | None, digits: int = 4, scale: float = 1.0) -> str:
    return "-" if ci is None else MeanCI(ci.mean * scale, ci.half_width * scale, ci.n).format(digits)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def label_table(result: PartResult) -> str:
    """Weight error, target accuracy and gain per estimator (mean ± 95% CI over seeds)."""
    cfg = result.config["label"]
    summary = result.summary(["estimator"], ["weight_mse", "accuracy", "gain", "nll"])
    rows = [
        [s["estimator"], _fmt(s["weight_mse"]), _fmt(s["accuracy"]), _fmt(s["gain"], 2, 100.0), _fmt(s["nll"])]
        for s in summary
    ]
    n = len(cfg["seeds"])
    shift = {
        "dirichlet": f"Dirichlet(alpha={cfg['alpha']:g})",
        "tweak-one": f"tweak-one (rho={cfg['rho']:g})",
        "knock-out": f"knock-out (delta={cfg['delta']:g})",
    }[cfg["kind"]]
    src = result.info.get("source", {})
    text = [
        f"Label shift: {shift} priors, {cfg['n_target']} target images from the test set, {n} seeds "
        f"(mean ± 95% t-CI). Source classifier: test accuracy {src.get('test_acc', float('nan')):.4f} "
        f"(trained in {src.get('seconds', float('nan')):.0f} s); "
        f"held-out source: {result.info.get('held_out_source', '?')}; largest condition number of C: "
        f"{result.info.get('max_condition_number') or float('nan'):.3g}.",
        "",
        _table(["estimator", "weight MSE ‖ŵ−w‖²/k", "target accuracy", "gain (points)", "target NLL"], rows),
        "",
        "`none` = no correction (ŵ = 1); `oracle` = predictions adjusted by the true w; "
        "`+ts`/`+bcts` = probabilities (temperature / bias-corrected temperature) calibrated on the "
        "held-out source first, then used both to estimate w and to make the adjusted predictions "
        "(`oracle+bcts`: true w on calibrated probabilities; `none+bcts`: calibration alone, ŵ = 1); "
        "`(retrain)` = MLP retrained with class-weighted loss.",
    ]
    estimators = [s for s in summary if s["estimator"] in cfg["estimators"]]
    if estimators:
        best = min(estimators, key=lambda s: s["weight_mse"].mean)
        bbse = next((s for s in estimators if s["estimator"] == "bbse"), None)
        line = f"Lowest weight error: **{best['estimator']}** ({_fmt(best['weight_mse'])})"
        if bbse is not None and best is not bbse:
            line += f"; BBSE: {_fmt(bbse['weight_mse'])}"
        text += ["", line + "."]
    return "\n".join(text)


def covariate_table(result: PartResult) -> str:
    """Target loss per scenario, model and weighting, with a verdict on whether weighting helped."""
    cfg = result.config["covariate"]
    summary = summarize(
        result.rows,
        ["scenario", "model", "variant"],
        ["target_loss", "loss_change", "target_acc", "ess_fraction", "log_ratio_corr"],
    )
    rows = []
    for s in summary:
        judged = "-" if s["variant"] == "unweighted" else verdict(s["loss_change"])
        rows.append(
            [
                s["scenario"],
                s["model"],
                s["variant"],
                _fmt(s["target_loss"]),
                _fmt(s["loss_change"]),
                _fmt(s["target_acc"]),
                _fmt(s["ess_fraction"], 3),
                judged,
            ]
        )
    corr = [r["log_ratio_corr"] for r in result.rows if r.get("log_ratio_corr") is not None]
    n_s = [r["n_source"] for r in result.rows if r["scenario"] == "fashion-mnist"]
    n_t = [r["n_target"] for r in result.rows if r["scenario"] == "fashion-mnist"]
    text = [
        f"Covariate shift: {result.info.get('selection', '')}, s = {cfg['strength']:g}; "
        f"{len(cfg['seeds'])} seeds (mean ± 95% t-CI); weights clipped at c = {cfg['clip']}; "
        f"{cfg['epochs']} Adam epochs per model."
        + (
            f" About {int(np.mean(n_s))} source and {int(np.mean(n_t))} unlabeled target images per seed;"
            f" corr(log β̂, exact log q/p) = {np.mean(corr):.3f}."
            if n_s
            else ""
        ),
        "",
        _table(
            [
                "scenario",
                "model",
                "variant",
                "target loss",
                "change vs unweighted",
                "target accuracy",
                "ESS / n",
                "weighting",
            ],
            rows,
        ),
        "",
        "`weighted` = β̂ from the logistic-regression domain classifier; `oracle` = the exact density "
        "ratio. `helps`/`hurts`: the 95% CI of the paired loss change excludes 0; otherwise no "
        "measurable effect. `gaussian-regression`: a misspecified linear model under a Gaussian "
        "input shift (Shimodaira 2000), where weighting must help.",
    ]
    return "\n".join(text)


def concept_table(result: PartResult) -> str:
    """Test accuracy on the relabeled test set at a few epochs, fine-tuning vs scratch."""
    cfg = result.config["concept"]
    summary = summarize(result.rows, ["n_train", "mode", "epoch"], ["test_acc"])
    last = cfg["epochs"]
    shown = sorted({0, 1, min(2, last), last})
    rows = []
    for n in cfg["n_train"]:
        for mode in ("finetune", "scratch"):
            by_epoch = {s["epoch"]: s["test_acc"] for s in summary if s["n_train"] == n and s["mode"] == mode}
            if by_epoch:
                rows.append([str(n), mode] + [_fmt(by_epoch.get(e)) for e in shown])
    return "\n".join(
        [
            f"Concept shift: {cfg['n_changed']} classes relabeled (a cycle), {len(cfg['seeds'])} seeds "
            f"(mean ± 95% t-CI); training examples from the held-out source, relabeled; accuracy on the "
            f"relabeled test set; Adam lr {cfg['lr']:g}, batch {cfg['batch_size']}, same budget for both.",
            "",
            _table(["relabeled examples", "mode"] + [f"epoch {e}" for e in shown], rows),
        ]
    )


def concept_figure(result: PartResult) -> Figure:
    """Learning curves (mean and 95% CI band over seeds), one panel per training-set size."""
    cfg = result.config["concept"]
    sizes = list(cfg["n_train"])
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 3.6), layout="constrained", squeeze=False)
    summary = summarize(result.rows, ["n_train", "mode", "epoch"], ["test_acc"])
    for ax, n in zip(axes[0], sizes):
        for mode, style in (("finetune", "-o"), ("scratch", "--s")):
            pts = sorted((s["epoch"], s["test_acc"]) for s in summary if s["n_train"] == n and s["mode"] == mode)
            if not pts:
                continue
            e = np.array([p[0] for p in pts])
            m = np.array([p[1].mean for p in pts])
            h = np.nan_to_num(np.array([p[1].half_width for p in pts]))
            ax.plot(e, m, style, ms=3, label=mode)
            ax.fill_between(e, m - h, m + h, alpha=0.2)
        ax.set_title(f"{n} relabeled examples")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (relabeled)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend()
    return fig


def study_markdown(results: Mapping[str, PartResult]) -> str:
    """All parts' tables, in the order label, covariate, concept."""
    makers = {"label": label_table, "covariate": covariate_table, "concept": concept_table}
    sections = []
    for part, title in (("label", "Label shift"), ("covariate", "Covariate shift"), ("concept", "Concept shift")):
        if part in results:
            r = results[part]
            sections.append(f"### {title}\n\n{makers[part](r)}\n\n({r.seconds:.0f} s)")
    return "\n\n".join(sections) + "\n"
