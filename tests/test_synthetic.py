"""Procedural shapes (mmpoint_jax/data/synthetic.py): layout, determinism, and difficulty."""

import csv

import numpy as np
import pytest

from mmpoint_jax.data import meshes, synthetic


def test_layout_labels_and_taxonomy(tmp_path):
    written = synthetic.generate_dataset(tmp_path, num_per_class=1, seed=0)
    assert len(synthetic.CATEGORIES) >= 10
    assert [label for _, label in written] == list(range(len(synthetic.CATEGORIES)))
    for path, label in written:
        relative = path.relative_to(tmp_path)
        synset, model_id, models, name = relative.parts
        assert (models, name) == ("models", "model_normalized.obj")
        assert synset == synthetic.synset_of(synthetic.CATEGORIES[label]) and len(model_id) == 32
        meshes.prepare_mesh(path)  # every category gives a usable mesh
    # Sorted synset folders are in CATEGORIES order, so a folder's rank is its label.
    assert sorted(synthetic.synset_of(c) for c in synthetic.CATEGORIES) == [
        synthetic.synset_of(c) for c in synthetic.CATEGORIES
    ]
    names = synthetic.read_taxonomy_names(tmp_path)
    assert [names[synthetic.synset_of(c)] for c in synthetic.CATEGORIES] == list(
        synthetic.CATEGORIES
    )
    assert not (tmp_path / synthetic.SPLIT_TABLE).exists()


def test_same_seed_same_files_other_seed_other_objects(tmp_path):
    first = synthetic.generate_dataset(tmp_path / "a", 2, seed=3, categories=["chair", "mug"])
    again = synthetic.generate_dataset(tmp_path / "b", 2, seed=3, categories=["mug", "chair"])
    other = synthetic.generate_dataset(tmp_path / "c", 2, seed=4, categories=["chair", "mug"])
    assert [p.relative_to(tmp_path / "a") for p, _ in first] == [
        p.relative_to(tmp_path / "b") for p, _ in again
    ]
    for (p, _), (q, _) in zip(first, again, strict=True):
        assert p.read_bytes() == q.read_bytes()
    assert not {p.parent.parent.name for p, _ in first} & {p.parent.parent.name for p, _ in other}
    a = synthetic.make_shape("chair", 3, 0)
    b = synthetic.make_shape("chair", 4, 0)
    assert a.vertices.shape != b.vertices.shape or not np.allclose(a.vertices, b.vertices)
    assert {label for _, label in first} == {
        synthetic.CATEGORIES.index("chair"),
        synthetic.CATEGORIES.index("mug"),
    }


def test_split_table_merges_sets_drawn_with_different_seeds(tmp_path):
    train = synthetic.generate_dataset(tmp_path, 2, seed=1, split="train", categories=["bowl"])
    test = synthetic.generate_dataset(tmp_path, 1, seed=2, split="test", categories=["bowl"])
    with open(tmp_path / synthetic.SPLIT_TABLE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"id", "synsetId", "subSynsetId", "modelId", "split"}
    splits = {row["modelId"]: row["split"] for row in rows}
    assert [splits[p.parent.parent.name] for p, _ in train] == ["train", "train"]
    assert [splits[p.parent.parent.name] for p, _ in test] == ["test"]


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown categories"):
        synthetic.generate_dataset(tmp_path, 1, seed=0, categories=["teapot"])
    with pytest.raises(ValueError, match="num_per_class"):
        synthetic.generate_dataset(tmp_path, -1, seed=0)


def _leave_one_out_1nn(features: np.ndarray, labels: np.ndarray) -> float:
    features = (features - features.mean(0)) / (features.std(0) + 1e-9)
    distance = np.linalg.norm(features[:, None] - features[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    return float((labels[distance.argmin(1)] == labels).mean())


def test_no_single_global_statistic_separates_the_categories_but_the_shape_does():
    scalars, shapes, labels = [], [], []
    for label, category in enumerate(synthetic.CATEGORIES):
        for index in range(10):
            mesh = meshes.normalise(meshes.clean_mesh(synthetic.make_shape(category, 0, index)))
            points, _ = meshes.sample_surface(mesh, 256, np.random.default_rng(index))
            extent = points.max(0) - points.min(0)
            scalars.append(
                [
                    extent[1] / max(extent[0], extent[2]),  # height / width
                    min(extent[0], extent[2]) / max(extent[0], extent[2]),  # footprint aspect
                    np.linalg.norm(points, axis=1).mean(),  # spread
                    meshes.triangle_areas(*mesh).sum(),  # surface area
                ]
            )
            pair_distances = np.linalg.norm(points[:128, None] - points[None, 128:], axis=-1)
            height_profile = np.histogram(points[:, 1], bins=8, range=(-1, 1))[0] / len(points)
            d2 = np.histogram(pair_distances, bins=16, range=(0, 2))[0] / pair_distances.size
            shapes.append(np.concatenate([d2, height_profile, extent]))
            labels.append(label)
    scalars, shapes, labels = np.asarray(scalars), np.asarray(shapes), np.asarray(labels)
    chance = 1 / len(synthetic.CATEGORIES)
    single = [_leave_one_out_1nn(scalars[:, [j]], labels) for j in range(scalars.shape[1])]
    assert max(single) < 0.5, single
    assert _leave_one_out_1nn(shapes, labels) > max(max(single) + 0.25, 6 * chance)
