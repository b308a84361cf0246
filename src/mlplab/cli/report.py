"""``mlplab report``: run the whole chapter (reusing what is stored) and write one self-contained page."""

from __future__ import annotations

import time
from typing import Optional

import typer

from mlplab.cli._common import console, on_interrupt, parse_csv, path_option, reports_errors


@reports_errors
def report(
    quick: bool = typer.Option(False, help="Every part on its --quick budget: minutes from an empty folder."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or mps."),
    out: str = typer.Option(
        "runs/report", help="The report's folder: report.html, report.md, figures/, and the runs under runs/."
    ),
    data_dir: Optional[str] = typer.Option(
        None, help="Folder with the Fashion-MNIST IDX files (default: search, then download)."
    ),
    house_dir: Optional[str] = typer.Option(
        None, help="Folder with the House Prices CSVs (default: search, then download; the section says if missing)."
    ),
    sections: str = typer.Option("", help="Only these sections, a comma list (default all): see --list."),
    synthetic: bool = typer.Option(
        False, "--synthetic", help="The experiments on small Gaussian blobs instead of Fashion-MNIST (a demo)."
    ),
    list_: bool = typer.Option(False, "--list", help="List the sections and what answers them, then exit."),
) -> None:
    """Answer the chapter in one page: every experiment, the shift study, House Prices, a learner's questions.

    Runs each part (a rerun with nothing changed trains nothing: it reads the stores under
    OUT/runs), judges a learner's answers to the exercises from the results and writes OUT/report.html (figures
    inlined, no external file or URL) and OUT/report.md (figures in OUT/figures).
    """
    from rich.markup import escape

    from mlplab.report import chapter
    from mlplab.report.core import ReportConfig, make_report

    if list_:
        for s in chapter.SECTIONS:
            names = ", ".join(name for name, _ in s.parts)
            console.print(f"[bold]{s.key:<16}[/] {s.book:<12} {s.title} ({names})", soft_wrap=True)
        raise typer.Exit(0)
    keys = chapter.section_keys()
    config = ReportConfig(
        quick=quick,
        device=device,
        out=str(path_option("--out", out)),
        data_dir=str(path_option("--data-dir", data_dir)) if data_dir is not None else None,
        house_dir=str(path_option("--house-dir", house_dir)) if house_dir is not None else None,
        sections=parse_csv("--sections", sections, str, ", ".join(keys)) if sections else (),
        synthetic=synthetic,
        progress=True,
    )
    on_interrupt(lambda: f"what finished is stored under {config.runs}; run the same command again to go on")
    t0 = time.perf_counter()

    def done(section: str, part) -> None:
        state = f"not run: {part.skipped}" if part.skipped else f"{len(part.conclusions)} conclusion(s)"
        console.print(f"[dim]{time.perf_counter() - t0:7.1f}s[/] {escape(f'{section}/{part.name}')} "
                      f"({part.seconds:.1f} s): {escape(state)}", soft_wrap=True)  # fmt: skip

    page, md = make_report(config, done)
    console.print(f"wrote {page} and {md} ({time.perf_counter() - t0:.1f} s)")
