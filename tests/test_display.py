"""Jupyter's rich displays of mlplab's results: HTML with every text escaped, figures as decodable PNGs."""

from __future__ import annotations

import base64
import html
import io
import re
from html.parser import HTMLParser

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mlplab import doctor
from mlplab.display import MAX_ROWS, table_html
from mlplab.errors import ConfigError
from mlplab.experiments.base import Conclusion, FigureSpec, Result
from mlplab.house.cv import CVReport, ModelScore
from mlplab.models import ModelConfig
from mlplab.train import EpochRecord, History, TrainConfig

HOSTILE = '<script>alert("x")</script> & <b>bold</b>'
DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


class _Tables(HTMLParser):
    """The tables of a page as lists of rows of cell texts (entities decoded), header row first."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def read_tables(markup: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(markup)
    return parser.tables


def images(markup: str) -> list[Image.Image]:
    """Every inline PNG of ``markup``, decoded."""
    out = []
    for encoded in DATA_URI.findall(markup):
        image = Image.open(io.BytesIO(base64.b64decode(encoded)))
        image.load()
        assert image.format == "PNG"
        out.append(image)
    return out


def assert_escaped(markup: str) -> None:
    assert "<script>" not in markup and "<b>bold</b>" not in markup
    assert html.escape(HOSTILE) in markup or "&lt;script&gt;" in markup


def history(n: int = 4, status: str = "ok") -> History:
    records = [EpochRecord(e, 2.0 / e, 0.5 + e / 20, 2.1 / e, 0.45 + e / 20, 0.01) for e in range(1, n + 1)]
    return History(records, status, initial_loss=2.3)


# ---- History -----------------------------------------------------------------------------------


def test_history_html_is_a_table_of_epochs_with_its_status_and_curves():
    h = history()
    markup = h._repr_html_()
    assert "status" in markup and ">ok<" in markup and "final test acc 0.6500" in markup
    (table,) = read_tables(markup)
    assert table[0] == ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"]
    assert [row[0] for row in table[1:]] == ["1", "2", "3", "4"]
    assert table[-1][4] == "0.6500"
    assert len(images(markup)) == 1


def test_history_png_and_mimebundle_draw_the_curves_once():
    h = history()
    png = Image.open(io.BytesIO(h._repr_png_()))
    assert png.format == "PNG" and png.size == (600, 400)
    bundle = h._repr_mimebundle_()
    assert set(bundle) == {"text/html", "image/png"}
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    assert bundle["image/png"] in bundle["text/html"]  # the same drawing, inlined


def test_an_empty_or_failed_history_still_displays_and_escapes_its_status():
    empty = History()
    assert empty._repr_png_() is None and "<table" not in empty._repr_html_() and "0 epochs" in empty._repr_html_()
    assert empty._repr_mimebundle_() == {"text/html": empty._repr_html_()}
    markup = history(2, status=HOSTILE)._repr_html_()
    assert_escaped(markup)
    assert repr(history(1)).startswith("History(records=[EpochRecord(")  # the plain-text repr is the dataclass's


def test_long_tables_show_their_ends_and_say_how_many_rows():
    markup = table_html(pd.DataFrame({"x": np.arange(100), "y": np.linspace(0, 1, 100)}))
    assert f"100 rows, {MAX_ROWS} shown" in markup and ">99<" in markup and ">0<" in markup
    assert "<td>0.0101</td>" in markup  # cells formatted as the Markdown tables format them


# ---- experiment Results ------------------------------------------------------------------------


def make_result() -> Result:
    widths = pd.DataFrame(
        {
            "width": [8, 64, 512],
            "acc_mean": [0.70, 0.80, 0.85],
            "acc_ci": [0.02, 0.01, np.nan],
            "note": [HOSTILE, "", "x"],
        }
    )
    grid = pd.DataFrame({"p1": [0.0, 0.0, 0.5, 0.5], "p2": [0.0, 0.5, 0.0, 0.5], "acc_mean": [0.8, 0.81, 0.82, 0.79]})
    return Result(
        name=f"demo {HOSTILE}",
        config={"seeds": 2, "quick": True, "note": HOSTILE},
        tables={"widths": widths, HOSTILE: grid},
        figures=[
            FigureSpec("acc-vs-width", "widths", "line", "width", "acc", logx=True, title=HOSTILE),
            FigureSpec("grid", HOSTILE, "heatmap", "p1", "acc", by="p2"),
        ],
        conclusions=[Conclusion("the best width is 512: 0.8500", {"best": 512}), Conclusion(HOSTILE)],
        seconds=1.5,
    )


def test_result_html_holds_conclusions_tables_and_figures_escaped():
    result = make_result()
    markup = result._repr_html_()
    assert_escaped(markup)
    assert "<li>the best width is 512: 0.8500</li>" in markup
    assert f"<li>{html.escape(HOSTILE)}</li>" in markup
    tables = read_tables(markup)
    assert [t[0] for t in tables] == [["width", "acc_mean", "acc_ci", "note"], ["p1", "p2", "acc_mean"]]
    assert tables[0][1] == ["8", "0.7000", "0.0200", HOSTILE]  # escaped in the markup, the text when read back
    assert tables[0][3][2] == ""  # NaN is an empty cell
    assert [i.format for i in images(markup)] == ["PNG", "PNG"]  # one per FigureSpec, inlined
    assert "settings" in markup and "1.5 s" in markup


def test_a_figure_of_a_missing_table_is_a_clear_error():
    result = make_result()
    result.figures.append(FigureSpec("lost", "nowhere", "line", "width", "acc"))
    with pytest.raises(ConfigError, match="nowhere"):
        result._repr_html_()


# ---- the doctor --------------------------------------------------------------------------------


def test_doctor_findings_stay_a_list_and_show_as_a_table():
    findings = doctor.check(ModelConfig(hidden=(256,)), TrainConfig(lr=0.5, weight_decay=3.0))
    assert isinstance(findings, doctor.Findings) and isinstance(findings, list)
    assert findings == list(findings) and findings[0].check == "weight-decay-flips"
    markup = findings._repr_html_()
    (table,) = read_tables(markup)
    assert table[0] == ["severity", "check", "saw", "why", "fix"]
    assert [row[1] for row in table[1:]] == [f.check for f in findings]
    assert findings[0]._repr_html_().count("<tr>") == 2  # the header and its own row
    assert "found nothing" in doctor.check(ModelConfig(), TrainConfig())._repr_html_()


def test_finding_text_is_escaped():
    finding = doctor.Finding("warning", "x<y", HOSTILE, HOSTILE, HOSTILE)
    assert_escaped(doctor.Findings([finding])._repr_html_())


# ---- House Prices -------------------------------------------------------------------


def test_cv_report_shows_its_table():
    scores = tuple(
        ModelScore(name, folds, 0.5, np.zeros(4))
        for name, folds in (("baseline", (0.17, 0.18)), (HOSTILE, (0.12, 0.13)))
    )
    report = CVReport(scores, folds=2, seed=0, n_rows=4, seconds=1.0)
    table = report.table()
    assert table["model"].tolist() == ["baseline", HOSTILE]
    assert table["mean"].tolist() == pytest.approx([0.175, 0.125]) and table["folds"][0] == "0.170 0.180"
    markup = report._repr_html_()
    assert_escaped(markup)
    assert "2-fold" in markup and [row[0] for row in read_tables(markup)[0][1:]] == ["baseline", HOSTILE]


def test_scripts_draw_with_agg():
    assert matplotlib.get_backend().lower() == "agg"  # mlplab.plots selects it outside Jupyter
