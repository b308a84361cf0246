"""``mlplab report``: the verdicts on hand-made findings, the on-the-spot checks against independent
references, the Markdown/HTML rendering, and a real report built from small stored runs."""

from __future__ import annotations

import base64
import dataclasses
import io
import re

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mlplab.cli import app
from mlplab.errors import ConfigError, MlplabError
from mlplab.experiments.base import Conclusion
from mlplab.report import chapter, parts, render
from mlplab.report.chapter import ANSWERED, NOT_SHOWN, PARTLY, SUPPORTED, WRONG
from mlplab.report.core import ReportConfig, build, make_report, write

runner = CliRunner()


def finding(key: str, **values) -> dict[str, Conclusion]:
    return {key: Conclusion(f"the finding {key} {values}", values, key.split(":")[1])}


# ---- the verdicts, on hand-made findings ------------------------------------------------------


@pytest.mark.parametrize(("winner", "status"), [("width=256", SUPPORTED), (None, NOT_SHOWN), ("width=1024", WRONG)])
def test_width_verdict_follows_the_paired_comparison(winner, status):
    f = finding("mlp-hidden:compare-widths", a="width=256", b="width=1024", winner=winner)
    assert chapter._widths(f).status == status


@pytest.mark.parametrize(
    ("best", "winner", "status"), [(0.03, None, SUPPORTED), (0.3, None, NOT_SHOWN), (0.3, "lr=0.3", WRONG)]
)
def test_learning_rate_verdict(best, winner, status):
    f = finding("mlp-lr:log-guess", best=best, guess=0.03, winner=winner)
    assert chapter._lr(f).status == status


@pytest.mark.parametrize(
    ("first", "status"),
    [({1: 1, 3: 4}, SUPPORTED), ({1: 1, 3: None}, SUPPORTED), ({1: 1, 3: 1}, NOT_SHOWN), ({"1": 2, "3": 5}, SUPPORTED)],
)
def test_depth_verdict_reads_when_each_depth_leaves_chance(first, status):
    f = {**finding("mlp-depth:leave-chance", first_epoch=first), **finding("mlp-depth:depth-budgets")}
    assert chapter._depth(f).status == status


@pytest.mark.parametrize(
    ("low", "high", "status"),
    [
        ("ok x10", "diverged x10", PARTLY),
        ("diverged x3, ok x7", "diverged x10", SUPPORTED),
        ("ok x10", "ok x10", NOT_SHOWN),
    ],
)
def test_unscaled_features_verdict(low, high, status):
    f = {**finding("poly-fit:unscaled-3", status=low), **finding("poly-fit:unscaled-19", status=high)}
    assert chapter._unscaled(f).status == status


@pytest.mark.parametrize(
    ("interchangeable", "mean", "status"),
    [(False, 0.1, SUPPORTED), (False, -0.1, WRONG), (True, 0.01, NOT_SHOWN), (None, 0.2, NOT_SHOWN)],
)
def test_dropout_swap_verdict(interchangeable, mean, status):
    f = finding("dropout:q1-swap", interchangeable=interchangeable, mean=mean)
    assert chapter._swap(f).status == status


@pytest.mark.parametrize(
    ("factor", "at_chance", "status"), [(-0.5, 6, SUPPORTED), (-0.5, 4, NOT_SHOWN), (0.5, 6, NOT_SHOWN)]
)
def test_collapse_verdict_needs_a_negative_factor_and_every_model_at_chance(factor, at_chance, status):
    f = finding("dropout:q4-collapse", decay_factor=factor, at_chance=at_chance, models=6)
    assert chapter._collapse(f).status == status


def test_additive_verdict_and_no_verdict_without_an_interval():
    assert chapter._additive(finding("dropout:q4-additive", additive=True)).status == SUPPORTED
    assert chapter._additive(finding("dropout:q4-additive", additive=False)).status == NOT_SHOWN
    assert chapter._additive(finding("dropout:q4-additive", additive=None)) is None


def test_best_mlp_verdict_compares_the_whole_interval_with_the_logs_088():
    above = chapter._best(finding("best-mlp:test", mean=0.906, ci=0.003))
    inside = chapter._best(finding("best-mlp:test", mean=0.885, ci=0.01))
    assert above.status == inside.status == ANSWERED
    assert "lies above the log's 0.88" in above.text and "not above" in inside.text


def test_every_judge_gives_no_verdict_when_its_finding_is_missing():
    for section in chapter.SECTIONS:
        for question in section.questions:
            assert question.judge({}) is None, question.label


def test_every_section_is_in_the_chapters_order_with_unique_keys():
    keys = chapter.section_keys()
    assert keys == ["mlp", "model-selection", "weight-decay", "dropout", "backprop", "stability", "shift", "house",
                    "best-mlp"]  # fmt: skip
    assert all(section.parts for section in chapter.SECTIONS)


# ---- the checks computed on the spot, against independent references -------------------------


def test_l1_update_against_a_numpy_step():
    part = parts.l1_update(ReportConfig())
    c = part.finding("l1-update")
    lr, lam = 0.003, 3.0
    g = torch.Generator().manual_seed(0)  # the same draws as the part, redone in numpy
    X = torch.randn(5, 200, generator=g, dtype=torch.float64).numpy()
    y = torch.randn(5, generator=g, dtype=torch.float64).numpy()
    w = torch.randn(200, generator=g, dtype=torch.float64).numpy()
    step = w - lr * (X.T @ (X @ w - y) / 5 + lam * np.sign(w))
    the_log = w - lr * lam - lr * X.T @ (X @ w - y) / 5
    assert c.values["log_error"] == pytest.approx(np.abs(step - the_log).max(), rel=1e-12)
    assert c.values["log_error"] == pytest.approx(2 * lr * lam)  # the negative weights: off by 2 eta lambda
    assert c.values["differ"] == c.values["negative"] == int((w < 0).sum())
    assert c.values["sign_error"] < 1e-12
    assert chapter._l1({"l1-update:l1-update": c}).status == WRONG


def test_activation_checks_match_the_closed_forms():
    part = parts.activation_checks(ReportConfig())
    assert part.finding("prelu-derivative").values["max_abs_difference"] == 0.0
    assert part.finding("tanh-identity").values["max_abs_difference"] < 1e-15
    table = part.tables[0].frame
    assert table["max_abs_difference"].max() < 1e-12


def test_backprop_checks():
    part = parts.backprop_checks(ReportConfig())
    grads, memory = (t.frame for t in part.tables)
    assert set(grads["activation"]) == {"relu", "sigmoid", "tanh", "prelu"}
    assert grads["max_relative_error"].max() < 1e-12
    # 784-256-256-10, float32: two hidden layers of 256 keep H (and with dropout the dropped output and the
    # mask) per example, plus the logits' gradient: 2 * 256 * 4 + 10 * 4 and 2 * (256 * 4 * 2 + 256) + 40
    assert memory["per_example_bytes"].tolist() == [2 * 256 * 4 + 40, 2 * (256 * 8 + 256) + 40]
    assert (memory["per_example_bytes"] == memory["formula_per_example_bytes"]).all()
    assert part.finding("gradient-shape").values["shape"] == [3, 4]


# ---- rendering -------------------------------------------------------------------------------


def test_slug_is_githubs():
    assert render.slug("2. Model selection: polynomial under- and overfitting") == (
        "2-model-selection-polynomial-under--and-overfitting"
    )
    assert render.slug("4. Dropout: the p1 x p2 grid") == "4-dropout-the-p1-x-p2-grid"


def test_table_text_merges_means_and_intervals():
    frame = pd.DataFrame({"width": [8, 16], "n": [3, 3], "acc_mean": [0.8, 0.85], "acc_ci": [0.01, float("nan")]})
    text = render.table_text(frame)
    assert text.splitlines()[0] == "| width | n | acc |"
    assert "| 8 | 3 | 0.8000 ± 0.0100 |" in text and "| 16 | 3 | 0.8500 |" in text
    assert render.merged(frame) and not render.merged(frame[["width", "n"]])


def test_a_missing_or_broken_figure_is_a_clear_error(tmp_path):
    with pytest.raises(MlplabError, match="cannot be read"):
        render.html("![f](figures/none.png)", tmp_path)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(MlplabError, match="not a PNG"):
        render.html("![f](bad.png)", tmp_path)


def test_report_config_refuses_an_unknown_section():
    with pytest.raises(ConfigError, match="nope"):
        ReportConfig(sections=("nope",))


def _png(path, color):
    Image.new("RGB", (40, 30), color).save(path)
    return path


def check_page(html: str, headings: list[str]) -> None:
    """Every image an inline PNG that decodes, no external URL, every heading and TOC anchor present."""
    images = re.findall(r'<img [^>]*src="([^"]*)"', html)
    assert images
    for src in images:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    urls = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert not [u for u in urls if not u.startswith(("data:", "#"))]
    assert "<link" not in html and "<script" not in html and "url(" not in html and "@import" not in html
    ids = set(re.findall(r' id="([^"]*)"', html))
    for anchor in re.findall(r'href="#([^"]*)"', html):
        assert anchor in ids
    for heading in headings:
        assert heading in html


def test_every_section_renders_from_stored_parts(tmp_path, monkeypatch):
    """The whole chapter, each part replaced by a small stored output with a figure and a table."""

    def fake(name):
        def run(config):
            figure = _png(tmp_path / f"{name}.png", "red")
            table = pd.DataFrame({"x": [1, 2], "y_mean": [0.5, 0.6], "y_ci": [0.1, 0.1], "n": [3, 3]})
            long = pd.DataFrame({"epoch": range(100), "loss": np.linspace(1, 0, 100)})
            return parts.PartOutput(name, f"the part {name}", f"mlplab run {name}", conclusions=[Conclusion(f"{name} ok")],
                                    figures=[parts.Figure(f"{name} figure", figure)],
                                    tables=[parts.Table("t", table), parts.Table("curves", long, tmp_path / "c.csv"),
                                            parts.Table("more", table)])  # fmt: skip

        return run

    sections = tuple(dataclasses.replace(s, parts=tuple((n, fake(n)) for n, _ in s.parts)) for s in chapter.SECTIONS)
    monkeypatch.setattr(chapter, "SECTIONS", sections)
    page, md = make_report(ReportConfig(out=str(tmp_path / "report")))
    html, text = page.read_text(encoding="utf-8"), md.read_text(encoding="utf-8")
    titles = [f"{i}. {s.title}" for i, s in enumerate(chapter.SECTIONS, 1)]
    check_page(html, titles)
    assert len(re.findall(r"<img ", html)) == sum(len(s.parts) for s in sections)
    for s in sections:
        for q in s.questions:  # every question quoted, with its (here absent) verdict
            assert q.asked in html
    assert text.count("without a verdict") >= 1 and "100 rows in" in text
    for path in re.findall(r"\]\((figures/[^)]*)\)", text):  # the Markdown's figures lie beside it
        assert (tmp_path / "report" / path).is_file()
    assert "<details>" in html and "mlplab report --sections dropout" in html


# ---- a real report from small stored runs ---------------------------------------------------


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    config = ReportConfig(quick=True, synthetic=True, out=str(out), house_dir=str(out / "no-house"),
                          sections=("weight-decay", "backprop", "stability", "house", "shift"))  # fmt: skip
    (out / "no-house").mkdir()
    return config, build(config)


def test_a_small_real_report(small_report, tmp_path):
    config, report = small_report
    page, md = write(report, tmp_path)
    html = page.read_text(encoding="utf-8")
    check_page(html, ["3. Weight decay", "5. Forward and backward propagation", "6. Numerical stability"])
    statuses = {q.label: v.status for q, v in report.verdicts() if v is not None}
    assert statuses["d2l 4.5, exercise 3"] == WRONG  # the log's L1 update lacks sign(w)
    assert statuses["d2l 4.8 (the log's notes)"] == SUPPORTED
    house = next(p for s in report.sections for p in s.parts if p.name == "house")
    shift = next(p for s in report.sections for p in s.parts if p.name == "shift")
    assert "House Prices" in house.skipped and "synthetic" in shift.skipped
    assert "Not run here" in html


def test_a_rerun_trains_nothing_and_says_the_same(small_report):
    from mlplab.sweep.results import load_results

    config, report = small_report
    store = next((config.runs / "stability").rglob("sweep.sqlite")).parent
    before = len(load_results(store))
    again = build(config)
    assert len(load_results(store)) == before
    said = lambda r: [c.text for s in r.sections for p in s.parts for c in p.conclusions]
    assert said(again) == said(report)


def test_cli_lists_sections_and_refuses_a_bad_one(tmp_path):
    listed = runner.invoke(app, ["report", "--list"])
    assert listed.exit_code == 0
    for key in chapter.section_keys():
        assert key in listed.output
    bad = runner.invoke(app, ["report", "--sections", "mlp,nope", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "nope" in bad.output


def test_the_small_report_in_a_real_browser(small_report, tmp_path):
    """Every image loads (naturalWidth > 0), no console error, no sideways scroll on a phone."""
    from mlplab.report.browser import check_page, find_browser

    if find_browser() is None:
        pytest.skip("no Chromium: scripts/install-browser.sh installs it (CI does)")
    _, report = small_report
    page, _ = write(report, tmp_path)
    shown = check_page(page, tmp_path / "first-screen.png", width=390, height=844)
    assert shown.ok, shown.details()
    assert shown.images == page.read_text(encoding="utf-8").count("<img ") > 0
    assert not shown.text_overflow
    assert Image.open(tmp_path / "first-screen.png").size == (390, 844)
