"""Import of CrossPoint's rendered ShapeNet layout (mmpoint_jax/data/import_crosspoint.py)."""

import numpy as np
import pytest
from PIL import Image

from mmpoint_jax import config_lib
from mmpoint_jax.data import import_crosspoint, records, render_stage

CHAIR, TABLE = "03001627", "04379243"
SIZE = 20  # stands in for R2N2's 137


def _write_ply(path, points):
    properties = "".join(f"property float {axis}\n" for axis in "xyz")
    header = f"ply\nformat ascii 1.0\nelement vertex {len(points)}\n{properties}end_header\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(f"{x} {y} {z}\n" for x, y, z in points))


def _write_views(render_dir, count, seed):
    """RGBA views: a red opaque square on a fully transparent black background."""
    render_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(count):
        rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
        top = int(rng.integers(0, SIZE // 2))
        rgba[top : top + 6, 4:10] = (200, 10, 10, 255)
        rgba[0, 0] = (0, 0, 255, 128)  # half-transparent blue corner
        name = f"{i:02d}.png"
        Image.fromarray(rgba, "RGBA").save(render_dir / name)
        names.append(name)
    (render_dir / "renderings.txt").write_text("\n".join(names) + "\n")
    (render_dir / "rendering_metadata.txt").write_text(
        "".join(f"{10.0 * i} 27.5 0 0.8 25\n" for i in range(count))
    )


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("crosspoint") / "data"
    rng = np.random.default_rng(0)
    clouds = {}
    for synset, model, count, views in [
        (CHAIR, "c1", 50, 4),  # fewer points than asked for
        (CHAIR, "c2", 64, 4),  # exactly as many
        (TABLE, "t1", 90, 4),  # more
        (TABLE, "t2", 64, 1),  # too few views
        (TABLE, "t3", 64, None),  # no render folder at all
    ]:
        points = rng.normal(size=(count, 3)) * [3.0, 1.0, 2.0] + 5.0
        _write_ply(root / "ShapeNet" / synset / f"{model}.ply", points)
        clouds[f"{synset}/{model}"] = points
        if views is not None:
            _write_views(
                root / "ShapeNetRendering" / synset / model / "rendering", views, seed=len(clouds)
            )
    return root, clouds


def _run(root, output, **overrides):
    values = {"input": str(root), "output": str(output), "workers": 0, "views": 2, "points": 64,
              "import_image_size": SIZE, **overrides}  # fmt: skip
    return render_stage.run(config_lib.load_config("configs/render.py", values))


def _records(output):
    return {
        r["object_id"]: r
        for shard in records.list_shards(output)
        for r in map(records.decode, records.read_shard(shard))
    }


def test_crosspoint_layout_imports_points_and_views(layout, tmp_path):
    root, clouds = layout
    summary = _run(root, tmp_path / "out")
    assert summary["written"] == 3 and summary["skipped_by_reason"] == {"missing-views": 2}
    manifest = render_stage.read_manifest(tmp_path / "out")
    assert manifest["input_format"] == "crosspoint" and manifest["class_names"] == [
        "chair",
        "table",
    ]
    assert manifest["image_size"] == SIZE and manifest["splits"]["train"]["per_class_counts"] == {
        "chair": 2,
        "table": 1,
    }
    imported = _records(tmp_path / "out")
    assert set(imported) == {f"{CHAIR}/c1", f"{CHAIR}/c2", f"{TABLE}/t1"}
    for object_id, record in imported.items():
        assert record["points"].shape == (64, 3)
        assert np.abs(record["points"].mean(axis=0)).max() < 0.25
        assert np.linalg.norm(record["points"], axis=1).max() <= 1.0 + 1e-5
        assert record["label"] == (0 if object_id.startswith(CHAIR) else 1)
        assert record["views"].shape == (2, SIZE, SIZE, 3)
        assert record["meta"]["r2n2_metadata"] == "0.0 27.5 0 0.8 25;10.0 27.5 0 0.8 25"
        assert record["meta"]["cameras"] == "unknown" and not record["extrinsics"].any()
    # A cloud with exactly N points keeps its stored order: normalisation only.
    stored = clouds[f"{CHAIR}/c2"]
    centred = stored - stored.mean(axis=0)
    expected = centred / np.linalg.norm(centred, axis=1).max()
    np.testing.assert_allclose(imported[f"{CHAIR}/c2"]["points"], expected, atol=1e-6)
    # Too few points: every stored point, then repeats.
    c1 = imported[f"{CHAIR}/c1"]["points"]
    assert len(np.unique(c1, axis=0)) == 50
    # Compositing: transparent background becomes white, the opaque square keeps its colour,
    # the half-transparent corner is halfway between blue and white.
    view = imported[f"{CHAIR}/c2"]["views"][0]
    assert tuple(view[SIZE - 1, SIZE - 1]) == (255, 255, 255)
    assert (view == (200, 10, 10)).all(axis=-1).sum() == 36
    np.testing.assert_allclose(view[0, 0], (127, 127, 255), atol=2)


def test_dropping_alpha_keeps_the_stored_colours_and_resizing_is_optional(layout, tmp_path):
    root, _ = layout
    _run(root, tmp_path / "drop", alpha="drop", import_image_size=40)
    view = _records(tmp_path / "drop")[f"{CHAIR}/c2"]["views"][0]
    assert view.shape == (40, 40, 3)
    assert tuple(view[-1, -1]) == (0, 0, 0)  # CrossPoint's loader: transparent black stays black


def test_points_only_import_needs_no_renders(layout, tmp_path):
    root, _ = layout
    summary = _run(root, tmp_path / "points", views=0)
    assert summary["written"] == 5 and summary["skipped"] == 0
    assert all(r["num_views"] == 0 for r in _records(tmp_path / "points").values())


def test_resample_indices_cover_all_cases():
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(import_crosspoint.resample_indices(5, 5, rng), np.arange(5))
    subset = import_crosspoint.resample_indices(100, 10, rng)
    assert len(set(subset)) == 10 and np.all(np.diff(subset) > 0)
    padded = import_crosspoint.resample_indices(3, 8, rng)
    assert len(padded) == 8 and set(padded) == {0, 1, 2}
