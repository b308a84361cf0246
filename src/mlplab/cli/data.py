"""``mlplab data``: find, verify and download data sets; show what is where.

Every flag is checked by the library call it is passed to (``fashion_mnist.fetch`` checks
``--timeout`` and ``--retries``, ``sources.search_dirs`` checks ``--data-dir``), so a notebook
gets the same errors as the command line.
"""

from __future__ import annotations

from typing import Optional

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from mlplab.cli._common import console, reports_errors

app = typer.Typer(rich_markup_mode="markdown", help="Find, verify and download data sets.", no_args_is_help=True)

# str, not Path: typer turns an empty value into Path("."), which would silently mean the cwd
DATA_DIR_HELP = "A folder holding the IDX files; when given, the only place searched (nothing is downloaded)."


@app.command()
@reports_errors
def fetch(
    data_dir: Optional[str] = typer.Option(None, help=DATA_DIR_HELP),
    timeout: float = typer.Option(
        30.0, help="Seconds without data before a download attempt is abandoned (0 < s <= 3600)."
    ),
    retries: int = typer.Option(3, help="Attempts per mirror (1 to 100)."),
) -> None:
    """Make sure Fashion-MNIST is available and verified, downloading missing files to the cache."""
    from mlplab.data import fashion_mnist, sources  # here, not at the top: `mlplab --help` starts fast

    sources.check_download_options(timeout, retries)  # before the progress bar draws anything
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("download", total=None)

        def report(done: int, total: int | None) -> None:  # one file at a time
            progress.update(task, completed=done, total=total)

        paths = fashion_mnist.fetch(data_dir, progress=report, timeout=timeout, retries=retries)
    for key, path in paths.items():
        fashion_mnist.load_file(key, path)
        console.print(f"[green]ok[/] {fashion_mnist.FILES[key].name:<26} {path}", soft_wrap=True)


@app.command()
@reports_errors
def info(data_dir: Optional[str] = typer.Option(None, help=DATA_DIR_HELP)) -> None:
    """Show where each Fashion-MNIST file comes from, its shape and the class counts (no download)."""
    import numpy as np

    from mlplab.data import fashion_mnist, sources

    console.print(
        "Search order: "
        + "  >  ".join(
            f"{d.label} ({d.path})"
            for d in sources.search_dirs(fashion_mnist.DATASET, data_dir, fashion_mnist.SYSTEM_DIR)
        )
    )
    data = fashion_mnist.load(data_dir, download=False)
    table = Table("file", "source", "shape", "dtype")
    table.columns[1].overflow = "fold"
    for key, path in data.paths.items():
        array = getattr(data, key)
        table.add_row(fashion_mnist.FILES[key].name, str(path), str(array.shape), str(array.dtype))
    console.print(table)
    counts = Table("class", "name", "train", "test")
    train_counts = np.bincount(data.train_labels, minlength=10)
    test_counts = np.bincount(data.test_labels, minlength=10)
    for c, name in enumerate(fashion_mnist.CLASS_NAMES):
        counts.add_row(str(c), name, str(train_counts[c]), str(test_counts[c]))
    console.print(counts)
    console.print("[green]all four files verified[/] (SHA-256 of the decompressed content matches upstream)")
