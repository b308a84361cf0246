"""Figures made from results (never during training). Uses matplotlib's Agg backend.

In a Jupyter kernel the kernel's own backend is kept (matplotlib-inline): selecting Agg there
would stop the learner's own ``plt`` figures from showing. mlplab's figures never depend on the
backend: they are saved to files or encoded as PNG bytes (:func:`png_bytes`) and closed.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

from mlplab.display import in_jupyter

if not in_jupyter():
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from mlplab.atomic import atomic_path, output_error
from mlplab.train import History


def training_curves(history: History, title: str = "") -> Figure:
    """Loss and accuracies against epochs: the figure the book's ``Animator`` draws (d2l 3.6)."""
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    epochs = history.column("epoch")
    ax.plot(epochs, history.column("train_loss"), "-", label="train loss")
    ax.plot(epochs, history.column("test_loss"), "-.", label="test loss")
    if history.records and history.final.train_acc is not None:
        ax.plot(epochs, history.column("train_acc"), "--", label="train acc")
        ax.plot(epochs, history.column("test_acc"), ":", label="test acc")
    ax.set_xlabel("epoch")
    ax.set_xlim(0.5, max(epochs, default=1) + 0.5)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    if history.status != "ok":
        ax.text(0.5, 0.5, history.status, transform=ax.transAxes, ha="center", color="red", fontsize=20)
    return fig


def save_figure(fig: Figure, path: Path, dpi: int = 120) -> Path:
    """Save ``fig`` atomically (temporary file, then rename) and close it."""
    try:
        with atomic_path(path) as tmp:
            try:
                fig.savefig(tmp, dpi=dpi)
            except OSError as exc:
                raise output_error(path, exc) from exc
    finally:
        plt.close(fig)
    return path


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """``fig`` encoded as PNG (for a display or an inline image), then closed."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()
