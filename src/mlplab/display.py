"""Rich displays in Jupyter: results shown as HTML tables and PNG figures, never drawn in training.

IPython shows an object through its ``_repr_html_`` / ``_repr_png_`` methods. mlplab's results
define them (:class:`mlplab.train.History`, :class:`mlplab.experiments.base.Result`, the doctor's
:class:`~mlplab.doctor.Findings`, :class:`mlplab.house.CVReport`) and delegate here, so that the
markup, its escaping and the figures' encoding live in one place. A sweep's results are pandas
DataFrames, which Jupyter already shows as tables.

Every piece of text is escaped (``html.escape``); figures are PNG bytes inlined as
``data:image/png;base64`` URIs, so an HTML export of the notebook is one self-contained file.
Nothing here is imported before a display is asked for: it imports matplotlib and pandas lazily.
"""

from __future__ import annotations

import base64
import html
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for the annotations: importing this module loads nothing heavy
    import pandas as pd

    from mlplab.doctor import Finding
    from mlplab.experiments.base import Result
    from mlplab.house.cv import CVReport
    from mlplab.train import History

MAX_ROWS = 20  # a longer table shows its first and last rows (all of them stay in the object)
SEVERITY_COLORS = {"error": "#c62828", "warning": "#b26a00", "note": "#555555"}
STATUS_OK_COLOR, STATUS_FAILED_COLOR = "#2e7d32", "#c62828"


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (notebook, JupyterLab, VS Code), False in a script or terminal.

    A kernel's shell has a ``kernel`` attribute (ipykernel's ``ZMQInteractiveShell``) and
    ``IPKernelApp`` in its config; the terminal ``ipython`` has neither. IPython is never imported
    here: a kernel has always imported it already, so where it is not in ``sys.modules`` (or not
    installed at all) this is no kernel.
    """
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    if shell is None:
        return False
    config = getattr(shell, "config", None)
    return hasattr(shell, "kernel") or (isinstance(config, Mapping) and "IPKernelApp" in config)


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...``: a PNG that an HTML page holds inline."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_html(png: bytes, alt: str, width: int | None = None) -> str:
    """An ``<img>`` of ``png`` (inline), with escaped ``alt`` text."""
    size = f' style="max-width: {width}px; width: 100%"' if width else ""
    return f'<img src="{png_data_uri(png)}" alt="{html.escape(alt)}"{size}>'


def table_html(table: pd.DataFrame, max_rows: int = MAX_ROWS, digits: int = 4) -> str:
    """``table`` as an HTML table: cells as the Markdown tables format them, text escaped.

    Floats get ``digits`` decimals (significant digits when very large or small), NaN is empty
    (:func:`mlplab.experiments.base.format_value`). A table longer than ``max_rows`` shows its
    first and last rows and says how many it has.
    """
    from mlplab.experiments.base import format_value

    body = table.to_html(
        index=False,
        escape=True,
        na_rep="",
        float_format=lambda v: format_value(v, digits),
        max_rows=max_rows,
        border=0,
    )
    note = f"<p><small>{len(table)} rows, {max_rows} shown</small></p>" if len(table) > max_rows else ""
    return body + note


def _status_html(status: str) -> str:
    color = STATUS_OK_COLOR if status == "ok" else STATUS_FAILED_COLOR
    return f'<b style="color: {color}">{html.escape(status)}</b>'


# ---- training ---------------------------------------------------------------------------------


def history_png(history: History, title: str = "", dpi: int = 100) -> bytes:
    """The training curves of ``history`` (:func:`mlplab.plots.training_curves`) as PNG bytes."""
    from mlplab.plots import png_bytes, training_curves

    return png_bytes(training_curves(history, title), dpi)


def history_frame(history: History) -> pd.DataFrame:
    """One row per epoch: ``epoch, train_loss, train_acc, test_loss, test_acc, seconds``."""
    import dataclasses

    import pandas as pd

    from mlplab.train import EpochRecord

    columns = [f.name for f in dataclasses.fields(EpochRecord)]
    return pd.DataFrame([dataclasses.asdict(r) for r in history.records], columns=columns)


def history_html(history: History, png: bytes | None = None) -> str:
    """The status line, the curves (``png``, drawn when not given) and the table of epochs."""
    n = len(history.records)
    parts = [f"status {_status_html(history.status)}, {n} epoch{'s' if n != 1 else ''}"]
    if n:
        final = history.final
        metric = "test acc" if final.test_acc is not None else "test loss"
        value = final.test_acc if final.test_acc is not None else final.test_loss
        parts.append(f"final {metric} {html.escape(f'{value:.4f}')}")
    head = f"<p><b>History</b>: {', '.join(parts)}</p>"
    if not n:
        return f"<div>{head}</div>"
    png = history_png(history) if png is None else png
    # the table beside the curves (below them where the output is narrow)
    table = f'<div style="flex: 0 1 auto">{table_html(history_frame(history))}</div>'
    curves = f'<div style="flex: 0 1 360px">{image_html(png, "training curves", 360)}</div>'
    row = '<div style="display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start">'
    return f"<div>{head}{row}{table}{curves}</div></div>"


# ---- experiments ------------------------------------------------------------------------------


def result_figures(result: Result, dpi: int = 90) -> list[tuple[str, bytes]]:
    """Every figure of ``result`` as ``(name, PNG bytes)``, drawn from its tables (as ``save`` draws them)."""
    from mlplab.errors import ConfigError
    from mlplab.experiments.plots import figure
    from mlplab.plots import png_bytes

    out = []
    for spec in result.figures:
        if spec.table not in result.tables:
            raise ConfigError("figure table", spec.table, f"the result has tables {', '.join(result.tables)}")
        out.append((spec.name, png_bytes(figure(spec, result.tables[spec.table]), dpi)))
    return out


def _settings_html(config: Mapping[str, Any]) -> str:
    items = "".join(f"<li><code>{html.escape(str(k))} = {html.escape(repr(v))}</code></li>" for k, v in config.items())
    return f"<details><summary>settings</summary><ul>{items}</ul></details>" if items else ""


def result_html(result: Result) -> str:
    """An experiment's Result: its conclusions, its figures inline, then each of its tables."""
    title = f"<h3>{html.escape(result.name)}</h3>"
    timing = f"<p><small>{result.seconds:.1f} s</small></p>" if result.seconds else ""
    conclusions = "".join(f"<li>{html.escape(c.text)}</li>" for c in result.conclusions)
    conclusions = f"<p><b>Conclusions</b></p><ul>{conclusions}</ul>" if conclusions else ""
    figures = "".join(
        f'<figure style="display: inline-block; margin: 0 8px 8px 0">{image_html(png, name, 420)}'
        f"<figcaption><small>{html.escape(name)}</small></figcaption></figure>"
        for name, png in result_figures(result)
    )
    tables = "".join(
        f"<p><b>{html.escape(str(key))}</b> <small>({len(table)} rows)</small></p>{table_html(table)}"
        for key, table in result.tables.items()
    )
    return f"<div>{title}{timing}{conclusions}<div>{figures}</div>{tables}{_settings_html(result.config)}</div>"


# ---- the doctor --------------------------------------------------------------------------------


def findings_html(findings: Iterable[Finding]) -> str:
    """The doctor's findings as one table (severity, check, what it saw, why, the fix), worst first as given."""
    rows = []
    for f in findings:
        color = SEVERITY_COLORS.get(f.severity, "#000000")
        cells = [f'<b style="color: {color}">{html.escape(f.severity)}</b>', f"<code>{html.escape(f.check)}</code>"]
        cells += [html.escape(text) for text in (f.saw, f.why, f.fix)]
        rows.append("<tr>" + "".join(f'<td style="text-align: left">{c}</td>' for c in cells) + "</tr>")
    if not rows:
        return "<p>The doctor found nothing: every check passes.</p>"
    head = "".join(f'<th style="text-align: left">{h}</th>' for h in ("severity", "check", "saw", "why", "fix"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# ---- House Prices --------------------------------------------------------------------------------


def cv_html(report: CVReport) -> str:
    """A House Prices cross-validation: mean and std log-RMSE per model, then the fold scores."""
    head = (
        f"<p><b>House Prices CV</b>: {report.folds}-fold, seed {report.seed}, {report.n_rows} rows, "
        f"{report.seconds:.1f} s (log-RMSE: lower is better)</p>"
    )
    return f"<div>{head}{table_html(report.table())}</div>"
