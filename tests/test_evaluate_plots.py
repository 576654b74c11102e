"""Headless PNGs: confusion matrix and t-SNE scatter."""

import numpy as np
import pytest
from PIL import Image

from mmpoint_jax.evaluate import plots, tsne


def test_confusion_matrix_png(tmp_path):
    confusion = np.array([[5, 1, 0], [0, 3, 3], [0, 0, 0]])
    path = plots.save_confusion_matrix_png(
        confusion, tmp_path / "sub" / "cm.png", ["a", "b", "c"], "t"
    )
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 10  # something is drawn
    assert not list((tmp_path / "sub").glob(".*.tmp"))  # atomic write left no temporary
    big = plots.save_confusion_matrix_png(np.eye(40, dtype=int), tmp_path / "cm40.png")
    with Image.open(big) as image:
        assert image.size[0] > 1000  # grows with the class count so the names stay readable
    with pytest.raises(ValueError, match=r"confusion must be \[C, C\]"):
        plots.save_confusion_matrix_png(np.zeros((2, 3)), tmp_path / "x.png")


def test_tsne_keeps_separated_classes_apart_and_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    feats = 10 * rng.normal(size=(3, 64))[labels] + rng.normal(size=(90, 64))
    embedding, perplexity = tsne.tsne_embedding(
        feats, seed=0, perplexity=30, max_iter=250, num_threads=1
    )
    assert embedding.shape == (90, 2) and perplexity == pytest.approx(29.0 + 2 / 3)
    distances = np.linalg.norm(embedding[:, None] - embedding[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert np.mean(labels[distances.argmin(axis=1)] == labels) > 0.95  # neighbours share a class
    info = tsne.save_tsne_png(
        feats,
        labels,
        tmp_path / "tsne.png",
        ["x", "y", "z"],
        max_points=60,
        max_iter=250,
        num_threads=1,
    )
    assert info["num_points"] == 60
    with Image.open(info["path"]) as image:
        assert image.format == "PNG"
    np.testing.assert_array_equal(tsne.subsample(90, 60, 1), tsne.subsample(90, 60, 1))
    assert len(np.unique(tsne.subsample(90, 60, 1))) == 60
