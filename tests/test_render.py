"""Cameras, ray casting and shading (mmpoint_jax/data/render.py) against analytic answers."""

import math

import numpy as np
import pytest

from mmpoint_jax.data import meshes, render, synthetic
from mmpoint_jax.data.meshes import Mesh

HEADLIGHT = render.Shading(
    albedo=(1.0, 1.0, 1.0), ambient=0.2, diffuse=0.8, light_dir=(0.0, 0.0, -1.0)
)


def _sphere(radius: float) -> Mesh:
    import open3d as o3d

    sphere = o3d.geometry.TriangleMesh.create_sphere(radius, 60)
    return Mesh(np.asarray(sphere.vertices), np.asarray(sphere.triangles, np.int64))


def _camera(eye, fov_deg=40.0, size=128):
    intrinsics = render.pinhole_intrinsics(fov_deg, size, size)[None]
    return intrinsics, render.look_at_extrinsics(np.asarray(eye, np.float64)[None])


def test_sphere_silhouette_area_and_shading_match_the_analytic_values():
    radius, distance, size, fov = 0.5, 2.8, 128, 40.0
    intrinsics, extrinsics = _camera([0.0, 0.0, distance], fov, size)
    image = render.render_views(_sphere(radius), intrinsics, extrinsics, size, HEADLIGHT)[0]
    hit = np.any(image != 255, axis=-1)
    focal = intrinsics[0, 0, 0]
    # A centred sphere projects to a disc of radius f * tan(asin(r / d)).
    disc_radius = focal * math.tan(math.asin(radius / distance))
    assert hit.sum() == pytest.approx(math.pi * disc_radius**2, rel=0.02)

    # Shading: intensity = ambient + diffuse * cos(normal, light), the light shining along the
    # optical axis, with the normal of the exact sphere where the pixel's ray meets it.
    rays = render.camera_rays(intrinsics, extrinsics, size, size)[0]
    origin, direction = rays[..., :3].astype(np.float64), rays[..., 3:].astype(np.float64)
    b = np.sum(origin * direction, axis=-1)
    disc = b**2 - (np.sum(origin**2, axis=-1) - radius**2)
    inside = (disc > 0) & hit
    t = -b - np.sqrt(np.where(inside, disc, 0.0))
    normal = (origin + t[..., None] * direction) / radius
    towards_light = -extrinsics[0, 2, :3]  # minus the camera's forward axis, world frame
    expected = 255 * (HEADLIGHT.ambient + HEADLIGHT.diffuse * np.maximum(normal @ towards_light, 0))
    error = np.abs(image[..., 0].astype(np.float64) - expected)[inside]
    assert error.mean() < 2.5 and np.percentile(error, 99) < 8  # flat facets of a 60-ring sphere
    assert np.all(image[~hit] == 255)


def _z_symmetric_object() -> Mesh:
    """Asymmetric left-right and up-down, symmetric under z -> -z."""
    return meshes.normalise(
        synthetic.merge(
            [
                synthetic.box((0.3, 0.0, 0.0), (0.8, 0.2, 0.6)),
                synthetic.box((-0.4, 0.3, 0.0), (0.2, 0.9, 0.3)),
                synthetic.box((0.6, -0.3, 0.0), (0.2, 0.2, 1.0)),
            ]
        )
    )


def test_views_from_opposite_sides_mirror_each_other_for_a_symmetric_object():
    size = 64
    intrinsics = np.repeat(render.pinhole_intrinsics(45.0, size, size)[None], 2, axis=0)
    extrinsics = render.look_at_extrinsics(np.array([[0.0, 1.0, 2.8], [0.0, 1.0, -2.8]]))
    front, back = render.render_views(
        _z_symmetric_object(), intrinsics, extrinsics, size, HEADLIGHT
    )
    assert not np.array_equal(front, front[:, ::-1])  # the object is not left-right symmetric
    same = np.all(np.abs(front.astype(int) - back[:, ::-1].astype(int)) <= 1, axis=-1)
    assert same.mean() > 0.995


def test_points_projected_with_the_record_cameras_land_on_the_silhouette():
    mesh = meshes.normalise(meshes.clean_mesh(synthetic.make_shape("chair", seed=0, index=1)))
    points, _ = meshes.sample_surface(mesh, 512, np.random.default_rng(0))
    size = 64
    intrinsics, extrinsics = render.sample_cameras(
        render.PRESETS["r2n2"], 4, size, np.random.default_rng(1)
    )
    views = render.render_views(mesh, intrinsics, extrinsics, size)
    for k, e, view in zip(intrinsics, extrinsics, views, strict=True):
        silhouette = np.any(view != 255, axis=-1)
        # One pixel of slack: thin legs can fall between pixel centres.
        grown = silhouette.copy()
        grown[1:] |= silhouette[:-1]
        grown[:-1] |= silhouette[1:]
        grown[:, 1:] |= silhouette[:, :-1]
        grown[:, :-1] |= silhouette[:, 1:]
        uvz = render.project_points(points, k, e)
        assert np.all(uvz[:, 2] > 0)
        cols, rows = np.round(uvz[:, 0]).astype(int), np.round(uvz[:, 1]).astype(int)
        assert np.all((cols >= 0) & (cols < size) & (rows >= 0) & (rows < size))
        assert grown[rows, cols].mean() == 1.0
        # And the origin, which the cameras look at, is the image centre.
        np.testing.assert_allclose(
            render.project_points(np.zeros((1, 3)), k, e)[0, :2], (size - 1) / 2, atol=1e-4
        )


def test_extrinsics_are_rigid_opencv_look_at_transforms():
    eyes = np.random.default_rng(0).normal(size=(16, 3)) * 3
    extrinsics = render.look_at_extrinsics(eyes)
    rotation = extrinsics[:, :3, :3]
    np.testing.assert_allclose(
        rotation @ rotation.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (16, 3, 3)), atol=1e-9
    )
    np.testing.assert_allclose(np.linalg.det(rotation), 1.0, atol=1e-9)
    # The eye maps to the camera origin, the origin lies straight ahead (+z), world up is image up.
    np.testing.assert_allclose(
        np.einsum("vij,vj->vi", rotation, eyes) + extrinsics[:, :3, 3], 0.0, atol=1e-9
    )
    ahead = extrinsics[:, :3, 3]
    np.testing.assert_allclose(ahead[:, :2], 0.0, atol=1e-9)
    assert np.all(ahead[:, 2] > 0)
    assert np.all(rotation[:, 1, 1] <= 1e-9)  # +Y world has a non-positive image-y component
    # Looking straight down still gives a valid camera.
    straight_down = render.look_at_extrinsics(np.array([[0.0, 3.0, 0.0]]))
    assert np.isfinite(straight_down).all()


def test_camera_presets_draw_from_their_ranges():
    rng = np.random.default_rng(0)
    preset = render.PRESETS["r2n2"]
    _, extrinsics = render.sample_cameras(preset, 500, 32, rng)
    eyes = -np.einsum("vji,vj->vi", extrinsics[:, :3, :3], extrinsics[:, :3, 3])
    distance = np.linalg.norm(eyes, axis=1)
    elevation = np.degrees(np.arcsin(eyes[:, 1] / distance))
    assert elevation.min() >= 25 - 1e-3 and elevation.max() < 30 + 1e-3
    assert distance.min() >= 3.5 * 0.65 - 1e-4 and distance.max() <= 3.5 * 0.95 + 1e-4
    azimuth = np.degrees(np.arctan2(-eyes[:, 2], eyes[:, 0])) % 360
    assert np.histogram(azimuth, bins=4, range=(0, 360))[0].min() > 90
    assert preset.fov_deg == pytest.approx(49.13, abs=0.01)

    _, extrinsics = render.sample_cameras(render.PRESETS["sphere"], 2000, 32, rng)
    directions = -np.einsum("vji,vj->vi", extrinsics[:, :3, :3], extrinsics[:, :3, 3])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    np.testing.assert_allclose(directions.mean(axis=0), 0.0, atol=0.06)
    # Uniform on the sphere <=> each coordinate uniform on [-1, 1] (Archimedes).
    assert np.histogram(directions[:, 1], bins=4, range=(-1, 1))[0].min() > 400
    assert render.get_preset("r2n2", fov_deg=25.0).fov_deg == 25.0
    with pytest.raises(ValueError, match="unknown camera preset"):
        render.get_preset("orbit")


def test_camera_rays_match_a_per_pixel_unprojection():
    intrinsics, extrinsics = render.sample_cameras(
        render.PRESETS["sphere"], 3, 16, np.random.default_rng(2)
    )
    intrinsics[2, 0, 0] *= 1.3  # views may have different intrinsics
    rays = render.camera_rays(intrinsics, extrinsics, 16, 12)
    assert rays.shape == (3, 16, 12, 6) and rays.dtype == np.float32
    for v in range(3):
        k, rotation, t = (
            intrinsics[v].astype(np.float64),
            extrinsics[v, :3, :3],
            extrinsics[v, :3, 3],
        )
        for row, col in [(0, 0), (15, 11), (7, 3)]:
            direction = rotation.T @ np.linalg.solve(k, [col, row, 1.0])
            np.testing.assert_allclose(
                rays[v, row, col, 3:], direction / np.linalg.norm(direction), atol=1e-6
            )
            np.testing.assert_allclose(rays[v, row, col, :3], -rotation.T @ t, atol=1e-5)


def test_face_table_shading_equals_plain_per_pixel_shading():
    mesh = meshes.normalise(meshes.clean_mesh(synthetic.make_shape("lamp", seed=0, index=0)))
    size, shading = 48, render.Shading()
    intrinsics, extrinsics = render.sample_cameras(
        render.PRESETS["sphere"], 3, size, np.random.default_rng(4)
    )
    images = render.render_views(mesh, intrinsics, extrinsics, size, shading)

    rays = render.camera_rays(intrinsics, extrinsics, size, size)
    faces = render.hit_faces(render.make_scene(mesh), rays)
    normals = meshes.face_normals(mesh.vertices, mesh.triangles)
    light = np.asarray(shading.light_dir) / np.linalg.norm(shading.light_dir)
    expected = np.full(images.shape, 255, np.int64)
    for v, row, col in zip(*np.nonzero(faces >= 0), strict=True):
        normal = normals[faces[v, row, col]]
        if normal @ rays[v, row, col, 3:] > 0:  # seen from behind: light the other side
            normal = -normal
        lambert = max(normal @ (extrinsics[v, :3, :3].T @ light), 0.0)
        value = (shading.ambient + shading.diffuse * lambert) * np.asarray(shading.albedo) * 255
        expected[v, row, col] = np.round(value)
    assert (faces >= 0).mean() > 0.05
    assert np.abs(images.astype(np.int64) - expected).max() <= 1


def test_fast_png_decodes_to_the_same_pixels():
    from mmpoint_jax.data import records

    rng = np.random.default_rng(0)
    image = np.full((17, 23, 3), 255, np.uint8)
    image[3:9, 5:20] = rng.integers(0, 256, size=(6, 15, 3), dtype=np.uint8)
    for level in (0, 3, 9):
        np.testing.assert_array_equal(records.decode_png(records.encode_png(image, level)), image)
    with pytest.raises(ValueError, match="uint8"):
        records.encode_png(image.astype(np.float32))
