"""``mlplab report``: the chapter answered in one self-contained HTML page, and in Markdown beside it.

:func:`make_report` runs every part of d2l's "Multilayer Perceptrons" chapter (the experiments of
:mod:`mlplab.experiments`, the distribution-shift study, the House Prices cross-validation and a
few checks computed on the spot), reusing what their stores already hold, and writes
``OUT/report.html`` (figures inlined, no external file or URL) and ``OUT/report.md`` (figures in
``OUT/figures/``). Each question of the study log is quoted with the log's own answer, then
answered by a verdict computed from the runs (:mod:`mlplab.report.chapter`).

>>> from mlplab.report import ReportConfig, make_report
>>> html, md = make_report(ReportConfig(quick=True, out="runs/report"))  # doctest: +SKIP

Modules: :mod:`~mlplab.report.chapter` (the sections, their questions and verdicts),
:mod:`~mlplab.report.parts` (what each part runs and returns), :mod:`~mlplab.report.core` (the
config, the run, the header), :mod:`~mlplab.report.render` (Markdown and HTML) and
:mod:`~mlplab.report.browser` (checks the page in headless Chromium). Importing this package
loads none of them (``python -m mlplab.report.browser`` stays light).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Report", "ReportConfig", "build", "make_report", "write"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mlplab.report import core

        return getattr(core, name)
    raise AttributeError(f"module 'mlplab.report' has no attribute {name!r}")
