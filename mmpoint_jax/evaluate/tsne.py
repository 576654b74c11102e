"""t-SNE maps of frozen features, coloured by class (scikit-learn's TSNE, PNG via plots.py).

Features above `pca_dims` dimensions are first reduced by PCA (the usual practice, and the one
sklearn's TSNE documentation recommends: the neighbour search on 2,048-d features is the slow
part). `max_points` draws a seeded random subset so 12k-object sets stay quick to plot.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from mmpoint_jax.evaluate import plots

DEFAULT_PERPLEXITY = 30.0
DEFAULT_PCA_DIMS = 50
DEFAULT_MAX_ITER = 1000  # sklearn's default; 250 is its minimum


def subsample(num_items: int, max_points: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `max_points` items, drawn without replacement."""
    if max_points is None or num_items <= max_points:
        return np.arange(num_items)
    return np.sort(np.random.default_rng(seed).choice(num_items, size=max_points, replace=False))


def tsne_embedding(
    feats: np.ndarray,
    seed: int = 0,
    perplexity: float = DEFAULT_PERPLEXITY,
    pca_dims: int | None = DEFAULT_PCA_DIMS,
    max_iter: int = DEFAULT_MAX_ITER,
    num_threads: int | None = None,
) -> tuple[np.ndarray, float]:
    """([M, 2] embedding, perplexity used). Perplexity is capped below M (sklearn requires it).

    `num_threads` caps the OpenMP threads of the gradient loop: on a machine whose cores are
    busy, sklearn's spinning threads make a 90-point map take 20 s instead of 0.5 s.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[0] < 3:
        raise ValueError(f"t-SNE needs [M >= 3, D] features, got shape {feats.shape}")
    if pca_dims is not None and feats.shape[1] > pca_dims and feats.shape[0] > pca_dims:
        feats = PCA(n_components=pca_dims, random_state=seed).fit_transform(feats)
    perplexity = float(min(perplexity, (feats.shape[0] - 1) / 3))
    tsne = TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=max_iter
    )
    with threadpool_limits(limits=num_threads, user_api="openmp"):
        return tsne.fit_transform(feats), perplexity


def save_tsne_png(
    feats: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    title: str = "",
    seed: int = 0,
    max_points: int | None = 5000,
    perplexity: float = DEFAULT_PERPLEXITY,
    pca_dims: int | None = DEFAULT_PCA_DIMS,
    max_iter: int = DEFAULT_MAX_ITER,
    num_threads: int | None = None,
) -> dict:
    """Embeds (a subset of) the features and writes the scatter; returns what was plotted."""
    feats, labels = np.asarray(feats), np.asarray(labels)
    if labels.shape != (feats.shape[0],):
        raise ValueError(f"labels {labels.shape} must be [M] for features {feats.shape}")
    chosen = subsample(len(labels), max_points, seed)
    embedding, used_perplexity = tsne_embedding(
        feats[chosen], seed, perplexity, pca_dims, max_iter, num_threads
    )
    written = plots.save_embedding_png(embedding, labels[chosen], path, class_names, title)
    return {"path": written, "num_points": int(len(chosen)), "perplexity": used_perplexity}
