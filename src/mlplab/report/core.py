"""The report's config, its run (:func:`build`), and its files (:func:`write`).

Layout of ``OUT`` (default ``runs/report``)::

    report.html            one self-contained page
    report.md              the same report; its figures in figures/
    figures/PART/NAME.png
    runs/NAME/...          each experiment's store (quick/ and full/), the shift study's parts,
                           the House Prices cross-validation: a rerun reuses all of them

A report holds one folder lock while it runs (a second ``mlplab report`` on the same folder is
refused, not interleaved); every file is written atomically, the page last.
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlplab.atomic import prepare_dir, write_bytes, write_text
from mlplab.errors import ConfigError
from mlplab.report import chapter, render
from mlplab.report.chapter import Question, Section, Verdict
from mlplab.report.parts import HOUSE_FOLDS, HOUSE_SEED, PartOutput, elapsed, findings
from mlplab.train import check_device

REPORT_LOCK = "report.lock"


@dataclass(frozen=True)
class ReportConfig:
    """What ``mlplab report`` runs.

    Attributes
    ----------
    quick : bool
        Every part on its ``--quick`` budget (a 10k/5k subset of Fashion-MNIST, fewer epochs):
        minutes from an empty folder.
    device : str
        ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    out : str
        The report's folder; the runs are stored under ``OUT/runs``.
    data_dir, house_dir : str, optional
        Fashion-MNIST's and House Prices' folders (default: searched, then downloaded).
    sections : tuple of str
        Only these sections (keys of :data:`mlplab.report.chapter.SECTIONS`); empty: all.
    synthetic : bool
        The experiments on small Gaussian blobs (a demo, tests): no Fashion-MNIST needed; the
        shift study, which shifts Fashion-MNIST itself, is then not run.
    progress : bool
        Progress bars while training.
    """

    quick: bool = False
    device: str = "cpu"
    out: str = "runs/report"
    data_dir: str | None = None
    house_dir: str | None = None
    sections: tuple[str, ...] = ()
    synthetic: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        check_device(self.device)
        if str(self.out) == "":
            raise ConfigError("out", "", "give a folder such as runs/report, or leave it out")
        object.__setattr__(self, "sections", tuple(self.sections))
        known = chapter.section_keys()
        for key in self.sections:
            if key not in known:
                raise ConfigError("section", key, f"expected some of {', '.join(known)}")

    @property
    def runs(self) -> Path:
        """Where the parts store their runs."""
        return Path(self.out) / "runs"

    def selected(self) -> list[Section]:
        return [s for s in chapter.SECTIONS if not self.sections or s.key in self.sections]

    def flags(self) -> str:
        """The command-line flags of this config (for the rerun commands the page names)."""
        flags = [("--quick", self.quick), (f"--device {self.device}", self.device != "cpu"),
                 ("--synthetic", self.synthetic)]  # fmt: skip
        return "".join(f" {flag}" for flag, on in flags if on)


@dataclass
class SectionOutput:
    section: Section
    parts: list[PartOutput]
    verdicts: list[tuple[Question, Verdict | None]]
    seconds: float


@dataclass
class Report:
    config: ReportConfig
    sections: list[SectionOutput] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def verdicts(self) -> list[tuple[Question, Verdict | None]]:
        return [pair for s in self.sections for pair in s.verdicts]


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device}: {torch.cuda.get_device_name(torch.device(device))}"
    return device


def _seeds(config: ReportConfig) -> str:
    """``3 per configuration (poly-fit: 10); the shift study: 3; ...``, read from the parts' own defaults."""
    from collections import Counter

    from mlplab import experiments
    from mlplab.shift.experiment import StudyConfig

    seeds = {name: experiments.module(name).Config().seeds for name in experiments.names()}
    usual = Counter(seeds.values()).most_common(1)[0][0]
    others = ", ".join(f"{name}: {n}" for name, n in seeds.items() if n != usual)
    study = StudyConfig.quick() if config.quick else StudyConfig()
    return (
        f"{usual} per configuration" + (f" ({others})" if others else "")
        + f"; the shift study: {len(study.label.seeds)}; House Prices: {HOUSE_FOLDS} folds of shuffle {HOUSE_SEED}"
    )  # fmt: skip


def _meta(config: ReportConfig, seconds: float) -> dict[str, Any]:
    import torch

    import mlplab

    budget = "--quick: a 10k/5k subset of Fashion-MNIST, fewer epochs" if config.quick else "full budget"
    if config.synthetic:
        budget += "; synthetic blobs instead of Fashion-MNIST (a demo)"
    return {
        "mlplab": mlplab.__version__,
        "budget": "quick report" if config.quick else "full report",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "table": {
            "machine": f"{_cpu()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}",
            "device": _device(config.device),
            "torch": f"{torch.__version__} ({torch.get_num_threads()} threads)",
            "Python": platform.python_version(),
            "budget": budget,
            "seeds": _seeds(config),
            "wall time": f"{seconds:.1f} s for this report (runs already stored are reused, not retrained)",
        },
    }


def build(config: ReportConfig, on_part: Callable[[str, PartOutput], None] | None = None) -> Report:
    """Run every part of the selected sections and judge the log's answers; ``on_part(section, part)`` after each."""
    from mlplab.data import read_once

    t0 = time.perf_counter()
    report = Report(config)
    with read_once():  # Fashion-MNIST is read once, not once per experiment
        _run_sections(config, report, on_part)
    report.seconds = time.perf_counter() - t0
    report.meta = _meta(config, report.seconds)
    return report


def _run_sections(config: ReportConfig, report: Report, on_part: Callable[[str, PartOutput], None] | None) -> None:
    for section in config.selected():
        outputs = []
        for _, runner in section.parts:
            part = elapsed(runner, config)
            outputs.append(part)
            if on_part is not None:
                on_part(section.key, part)
        found = findings({p.name: p for p in outputs})
        verdicts = [(q, q.judge(found)) for q in section.questions]
        report.sections.append(SectionOutput(section, outputs, verdicts, sum(p.seconds for p in outputs)))


def write(report: Report, out: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` (figures copied to ``figures/PART/``) and then ``report.html``; return their paths."""
    folder = prepare_dir(out if out is not None else report.config.out, "report folder")
    copied: dict[Path, str] = {}
    for section in report.sections:
        for part in section.parts:
            for figure in part.figures:
                relative = f"figures/{part.name}/{figure.path.name}"
                write_bytes(prepare_dir(folder / "figures" / part.name, "figures folder") / figure.path.name,
                            figure.path.read_bytes())  # fmt: skip
                copied[figure.path] = relative
    text = render.markdown(report, lambda figure: copied[figure.path])
    md = write_text(folder / "report.md", text)
    page = write_text(folder / "report.html", render.html(text, folder))
    return page, md


def make_report(config: ReportConfig, on_part: Callable[[str, PartOutput], None] | None = None) -> tuple[Path, Path]:
    """:func:`build` and :func:`write` under the folder's lock; returns the paths of report.html and report.md."""
    from mlplab.lock import folder_lock

    with folder_lock(config.out, REPORT_LOCK, "mlplab report"):
        return write(build(config, on_part))


__all__ = ["Report", "ReportConfig", "SectionOutput", "build", "make_report", "write"]
