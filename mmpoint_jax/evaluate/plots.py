"""PNG figures of evaluation results: confusion matrices and 2-D embeddings coloured by class.

Headless: figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend
switch, no display), and written atomically so a half-written PNG is never left behind.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np

from mmpoint_jax import io_utils

_MAX_ANNOTATED_CLASSES = 20  # above this the cell numbers become unreadable


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _write_png(figure, path: str | os.PathLike) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    io_utils.atomic_write_bytes(path, buffer.getvalue())
    return os.fspath(path)


def _class_names(names: Sequence[str] | None, count: int) -> list[str]:
    if names is None:
        return [str(i) for i in range(count)]
    if len(names) < count:
        raise ValueError(f"{len(names)} class names for {count} classes")
    return list(names[:count])


def save_confusion_matrix_png(
    confusion: np.ndarray,
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    title: str = "",
    normalise: bool = True,
) -> str:
    """Rows = truth, columns = prediction; `normalise` colours each row by its recall share."""
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be [C, C], got shape {confusion.shape}")
    num_classes = confusion.shape[0]
    names = _class_names(class_names, num_classes)
    values = confusion.astype(np.float64)
    if normalise:
        support = values.sum(axis=1, keepdims=True)
        values = np.divide(values, support, out=np.zeros_like(values), where=support > 0)
    side = max(4.0, 0.3 * num_classes + 2.0)
    figure = _new_figure(side + 1.0, side)
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalise else None)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    ticks = np.arange(num_classes)
    axes.set_xticks(ticks, names, rotation=90, fontsize=7)
    axes.set_yticks(ticks, names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title)
    if num_classes <= _MAX_ANNOTATED_CLASSES:
        threshold = values.max() / 2 if values.size else 0
        for (row, col), count in np.ndenumerate(confusion):
            colour = "white" if values[row, col] > threshold else "black"
            axes.text(col, row, str(count), ha="center", va="center", fontsize=6, color=colour)
    return _write_png(figure, path)


def save_embedding_png(
    embedding: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    title: str = "",
) -> str:
    """A scatter of [M, 2] points, one colour per class, with a legend of the class names."""
    embedding = np.asarray(embedding)
    labels = np.asarray(labels)
    if embedding.ndim != 2 or embedding.shape[1] != 2 or labels.shape != (embedding.shape[0],):
        raise ValueError(
            f"need embedding [M, 2] and labels [M]; got {embedding.shape}, {labels.shape}"
        )
    from matplotlib import colormaps

    classes = np.unique(labels)
    names = _class_names(class_names, int(classes.max()) + 1 if classes.size else 0)
    colormap = colormaps["tab20" if len(classes) <= 20 else "gist_ncar"]
    figure = _new_figure(9.0, 7.0)
    axes = figure.add_subplot()
    for i, cls in enumerate(classes):
        colour = colormap(i / max(len(classes) - 1, 1) if len(classes) > 20 else i)
        chosen = labels == cls
        axes.scatter(*embedding[chosen].T, s=4, color=colour, label=names[cls], linewidths=0)
    axes.set_xticks([])
    axes.set_yticks([])
    if title:
        axes.set_title(title)
    axes.legend(
        loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6, markerscale=3, frameon=False,
        ncol=1 if len(classes) <= 25 else 2,
    )  # fmt: skip
    return _write_png(figure, path)
