"""Mesh reading, checking, normalising and surface sampling (mmpoint_jax/data/meshes.py)."""

import numpy as np
import pytest

from mmpoint_jax.data import meshes
from mmpoint_jax.data.meshes import Mesh, MeshError

UNIT_SQUARE = Mesh(
    np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float64),
    np.array([[0, 1, 2], [0, 2, 3]], np.int64),
)


def _cube(half=1.0) -> Mesh:
    corners = np.array(
        [[x, y, z] for x in (-half, half) for y in (-half, half) for z in (-half, half)]
    )
    faces = [
        [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
        [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],
    ]  # fmt: skip
    return Mesh(corners.astype(np.float64), np.array(faces, np.int64))


def test_off_reader_handles_fused_header_comments_and_polygons(tmp_path):
    path = tmp_path / "quad.off"
    # ModelNet quirk: counts fused onto the header line; one quad (fan-split) and one triangle.
    path.write_text(
        "OFF5 2 0\n# a comment\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n0 0 1\n4 0 1 2 3\n3 0 1 4\n"
    )
    mesh = meshes.load_mesh(path)
    np.testing.assert_array_equal(mesh.vertices[4], [0, 0, 1])
    np.testing.assert_array_equal(mesh.triangles, [[0, 1, 2], [0, 2, 3], [0, 1, 4]])
    plain = tmp_path / "plain.off"
    plain.write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n")
    np.testing.assert_array_equal(meshes.load_mesh(plain).triangles, UNIT_SQUARE.triangles)


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".stl"])
def test_open3d_formats_read_back_what_was_written(tmp_path, suffix):
    import open3d as o3d

    cube = _cube(0.5)
    path = tmp_path / f"cube{suffix}"
    o3d_mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(cube.vertices), o3d.utility.Vector3iVector(cube.triangles)
    )
    o3d_mesh.compute_triangle_normals()  # STL needs them
    assert o3d.io.write_triangle_mesh(str(path), o3d_mesh)
    mesh = meshes.load_mesh(path)
    assert len(mesh.triangles) == 12
    # STL stores triangles as corner soups; compare the surface, not the vertex list.
    area = meshes.triangle_areas(*meshes.clean_mesh(mesh)).sum()
    assert area == pytest.approx(6.0, rel=1e-6)


def test_write_obj_round_trips(tmp_path):
    cube = _cube(0.25)
    meshes.write_obj(tmp_path / "c.obj", cube)
    back = meshes.load_mesh(tmp_path / "c.obj")
    # open3d renumbers vertices on reading; the triangles' corners must be the same.
    np.testing.assert_allclose(
        back.vertices[back.triangles], cube.vertices[cube.triangles], atol=1e-6
    )


@pytest.mark.parametrize(
    "content, kind",
    [
        ("", "unreadable"),
        ("OFF\n0 0 0\n", "empty"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\nnan 1 0\n3 0 1 2\n", "non-finite"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n", "degenerate"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "bad-faces"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n", "unreadable"),
        ("solid garbage\n", "unreadable"),
    ],
)
def test_bad_meshes_raise_a_named_kind(tmp_path, content, kind):
    path = tmp_path / "bad.off"
    path.write_text(content)
    with pytest.raises(MeshError) as info:
        meshes.prepare_mesh(path)
    assert info.value.kind == kind


def test_unsupported_or_missing_files_are_unreadable(tmp_path):
    with pytest.raises(MeshError, match="unsupported"):
        meshes.load_mesh(tmp_path / "x.fbx")
    with pytest.raises(MeshError, match="not found"):
        meshes.load_mesh(tmp_path / "missing.obj")


def test_clean_drops_zero_area_faces_and_unused_vertices():
    vertices = np.concatenate([UNIT_SQUARE.vertices, [[100.0, 100.0, 100.0]]])  # vertex 4 unused
    triangles = np.concatenate([UNIT_SQUARE.triangles, [[0, 1, 1]]])  # zero area
    cleaned = meshes.clean_mesh(Mesh(vertices, triangles))
    assert len(cleaned.vertices) == 4 and len(cleaned.triangles) == 2
    # The far unused vertex must not decide the normalisation scale.
    assert np.linalg.norm(meshes.normalise(cleaned).vertices, axis=1).max() == pytest.approx(1.0)


def test_normalise_centres_the_surface_and_fits_the_unit_sphere():
    rng = np.random.default_rng(0)
    cube = _cube(1.0)
    shifted = Mesh(cube.vertices * [3.0, 1.0, 2.0] + rng.normal(size=3) * 10, cube.triangles)
    mesh = meshes.normalise(shifted)
    assert np.linalg.norm(mesh.vertices, axis=1).max() == pytest.approx(1.0)
    points, _ = meshes.sample_surface(mesh, 20000, rng)
    np.testing.assert_allclose(points.mean(axis=0), 0.0, atol=0.02)


def test_uniform_sampling_is_on_the_surface_and_proportional_to_area():
    # Two faces of a box: a 2x2 face and a 1x2 face; points split 2:1 between them.
    vertices = np.array(
        [[0, 0, 0], [2, 0, 0], [2, 2, 0], [0, 2, 0], [0, 0, 1], [0, 2, 1]], np.float64
    )
    triangles = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 5], [0, 5, 4]], np.int64)
    points, normals = meshes.sample_surface(
        Mesh(vertices, triangles), 30000, np.random.default_rng(1)
    )
    on_floor = np.isclose(points[:, 2], 0.0, atol=1e-6)
    on_wall = np.isclose(points[:, 0], 0.0, atol=1e-6)
    assert np.all(on_floor | on_wall)
    assert on_floor.mean() == pytest.approx(2 / 3, abs=0.01)
    assert np.allclose(np.abs(normals[on_floor & ~on_wall]), [0, 0, 1], atol=1e-6)
    assert np.allclose(np.abs(normals[on_wall & ~on_floor]), [1, 0, 0], atol=1e-6)
    # Uniform within a face: the floor's quadrants get equal shares.
    floor = points[on_floor & ~on_wall]
    quadrant = (floor[:, 0] > 1).astype(int) * 2 + (floor[:, 1] > 1)
    np.testing.assert_allclose(np.bincount(quadrant) / len(floor), 0.25, atol=0.015)


def test_sampling_is_reproducible_from_the_rng():
    mesh = meshes.normalise(_cube())
    a = meshes.sample_surface(mesh, 256, np.random.default_rng(5), "poisson")
    b = meshes.sample_surface(mesh, 256, np.random.default_rng(5), "poisson")
    c = meshes.sample_surface(mesh, 256, np.random.default_rng(6), "poisson")
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.float32 and a[0].shape == (256, 3) and a[1].shape == (256, 3)


def _min_spacing(points):
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return d.min()


def test_poisson_sampling_spreads_points_more_evenly_than_uniform():
    mesh = meshes.normalise(_cube())
    uniform, _ = meshes.sample_surface(mesh, 256, np.random.default_rng(0), "uniform")
    poisson, _ = meshes.sample_surface(mesh, 256, np.random.default_rng(0), "poisson")
    assert _min_spacing(poisson) > 3 * _min_spacing(uniform)


def test_farthest_point_indices_match_a_plain_greedy_loop():
    points = np.random.default_rng(3).normal(size=(200, 3))
    expected = [0]
    for _ in range(29):
        distance = [min(np.linalg.norm(p - points[j]) for j in expected) for p in points]
        expected.append(int(np.argmax(distance)))
    np.testing.assert_array_equal(meshes.farthest_point_indices(points, 30), expected)


def test_unknown_sampling_method_is_rejected():
    with pytest.raises(ValueError, match="unknown sampling method"):
        meshes.sample_surface(meshes.normalise(_cube()), 8, np.random.default_rng(0), "grid")
