"""Views of a normalised mesh: camera presets, ray casting (open3d, headless) and shading.

Cameras follow OpenCV conventions, as the record schema stores them: `intrinsics` K maps camera
coordinates to pixels with pixel centres at integer coordinates (column u, row v);
`extrinsics` [R t; 0 1] maps world to camera coordinates with x right, y down, z forward.
The world is +Y up, as in ShapeNet and ModelNet. A world point X appears at pixel
`round(K (R X + t))` after the perspective division.

Presets (`PRESETS`):
* `r2n2` mimics the 3D-R2N2 renders (ShapeNetRendering) used by CrossPoint and MM-Point:
  azimuth U[0, 360), elevation U[25, 30) degrees, distance 1.75 x U[0.65, 0.95). Two facts set
  the scale: (1) in 3D-R2N2's Blender renderer (`setViewpoint`, read in several public copies)
  the `25` written as field of view to `rendering_metadata.txt` is never applied; the camera keeps
  Blender's default 35 mm lens on a 32 mm sensor, a 49.1 degree field of view; (2) ShapeNetCore
  meshes are normalised to a unit bounding-box diagonal (radius <= 0.5; documented for v2 and
  believed for v1), whereas ours fill the unit sphere (radius 1), so distances are doubled. The
  object then fills the frame as in the R2N2 images. `fov_deg=25` in the config gives the
  literal reading instead (a tight crop).
* `sphere`: viewing directions uniform over the sphere, distance 2.8 (the R2N2 mean), same lens.

Shading is Lambertian with an ambient term under one directional light fixed in the camera frame
(from the upper left, behind the camera), flat per triangle, on a white background. open3d is
imported lazily: only the offline render stage needs it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mmpoint_jax.data.meshes import Mesh, face_normals

BLENDER_DEFAULT_FOV_DEG = math.degrees(2.0 * math.atan(16.0 / 35.0))  # 35 mm lens, 32 mm sensor
R2N2_MAX_DISTANCE = 1.75
# ShapeNetCore v1 objects (unit bounding-box diagonal) are half the size of unit-sphere objects.
R2N2_TO_UNIT_SPHERE = 2.0
WORLD_UP = np.array([0.0, 1.0, 0.0])


@dataclasses.dataclass(frozen=True)
class CameraPreset:
    """How viewpoints are drawn: look-at cameras aimed at the origin from a random direction."""

    name: str
    distance: tuple[float, float]  # uniform range, unit-sphere object units
    fov_deg: float
    # None: directions uniform over the sphere; else uniform ranges in degrees.
    azimuth_deg: tuple[float, float] | None = None
    elevation_deg: tuple[float, float] | None = None


PRESETS = {
    "r2n2": CameraPreset(
        name="r2n2",
        distance=(
            R2N2_TO_UNIT_SPHERE * R2N2_MAX_DISTANCE * 0.65,
            R2N2_TO_UNIT_SPHERE * R2N2_MAX_DISTANCE * 0.95,
        ),
        fov_deg=BLENDER_DEFAULT_FOV_DEG,
        azimuth_deg=(0.0, 360.0),
        elevation_deg=(25.0, 30.0),
    ),
    "sphere": CameraPreset(
        name="sphere",
        distance=(R2N2_TO_UNIT_SPHERE * R2N2_MAX_DISTANCE * 0.8,) * 2,
        fov_deg=BLENDER_DEFAULT_FOV_DEG,
    ),
}


@dataclasses.dataclass(frozen=True)
class Shading:
    """Lambert + ambient: colour = albedo * (ambient + diffuse * max(0, n . light))."""

    albedo: tuple[float, float, float] = (0.8, 0.8, 0.8)
    ambient: float = 0.3
    diffuse: float = 0.7
    # Direction towards the light in camera coordinates (x right, y down, z forward).
    light_dir: tuple[float, float, float] = (-0.4, -0.6, -1.0)
    background: tuple[int, int, int] = (255, 255, 255)


def get_preset(name: str, fov_deg: float = 0.0) -> CameraPreset:
    """A named preset; `fov_deg > 0` replaces its field of view."""
    if name not in PRESETS:
        raise ValueError(f"unknown camera preset {name!r}; expected one of {sorted(PRESETS)}")
    preset = PRESETS[name]
    return dataclasses.replace(preset, fov_deg=fov_deg) if fov_deg > 0 else preset


# ----------------------------------------------------------------------------------------------
# Cameras


def pinhole_intrinsics(fov_deg: float, height: int, width: int) -> np.ndarray:
    """K [3, 3] with `fov_deg` across the larger image side, principal point at the centre."""
    focal = 0.5 * max(height, width) / math.tan(math.radians(fov_deg) / 2.0)
    return np.array(
        [[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]]
    )


def look_at_extrinsics(eyes: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """World-to-camera [V, 4, 4] for cameras at `eyes` [V, 3] looking at `target`, +Y up."""
    eyes = np.asarray(eyes, np.float64).reshape(-1, 3)
    target = np.zeros(3) if target is None else np.asarray(target, np.float64)
    forward = target - eyes
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)  # [V, 3]
    # Looking straight up or down, +Y cannot define "right"; -Z stands in for up there.
    vertical = np.abs(forward @ WORLD_UP) > 0.999
    up = np.where(vertical[:, None], np.array([0.0, 0.0, -1.0]), WORLD_UP)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward], axis=1)  # [V, 3, 3], rows = camera axes
    extrinsics = np.tile(np.eye(4), (len(eyes), 1, 1))
    extrinsics[:, :3, :3] = rotation
    extrinsics[:, :3, 3] = -np.einsum("vij,vj->vi", rotation, eyes)
    return extrinsics


def camera_directions(preset: CameraPreset, num_views: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors from the object towards each camera, [V, 3]."""
    if preset.azimuth_deg is None:
        directions = rng.normal(size=(num_views, 3))
        return directions / np.linalg.norm(directions, axis=1, keepdims=True)
    azimuth = np.radians(rng.uniform(*preset.azimuth_deg, size=num_views))
    elevation = np.radians(rng.uniform(*preset.elevation_deg, size=num_views))
    # Azimuth turns right-handedly about +Y starting from +X; elevation lifts towards +Y.
    return np.stack(
        [
            np.cos(elevation) * np.cos(azimuth),
            np.sin(elevation),
            -np.cos(elevation) * np.sin(azimuth),
        ],
        axis=1,
    )


def sample_cameras(
    preset: CameraPreset, num_views: int, image_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random viewpoints of a preset: intrinsics [V, 3, 3] and extrinsics [V, 4, 4] (float32)."""
    directions = camera_directions(preset, num_views, rng)
    distances = rng.uniform(*preset.distance, size=num_views)
    extrinsics = look_at_extrinsics(directions * distances[:, None])
    intrinsics = np.tile(
        pinhole_intrinsics(preset.fov_deg, image_size, image_size), (num_views, 1, 1)
    )
    return intrinsics.astype(np.float32), extrinsics.astype(np.float32)


def pixel_directions(intrinsics: np.ndarray, height: int, width: int) -> np.ndarray:
    """Unit directions through every pixel centre in camera coordinates, [H * W, 3] float32."""
    k = np.asarray(intrinsics, np.float64)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    directions = np.stack(
        [(cols - k[0, 2]) / k[0, 0], (rows - k[1, 2]) / k[1, 1], np.ones((height, width))], axis=-1
    ).reshape(-1, 3)
    return (directions / np.linalg.norm(directions, axis=1, keepdims=True)).astype(np.float32)


def camera_rays(
    intrinsics: np.ndarray, extrinsics: np.ndarray, height: int, width: int
) -> np.ndarray:
    """A ray per pixel centre, world frame: [V, H, W, 6] float32 (origin xyz, unit direction)."""
    intrinsics = np.asarray(intrinsics, np.float64).reshape(-1, 3, 3)
    extrinsics = np.asarray(extrinsics, np.float64).reshape(-1, 4, 4)
    rotations = extrinsics[:, :3, :3].astype(np.float32)  # [V, 3, 3]
    centres = -np.einsum("vji,vj->vi", extrinsics[:, :3, :3], extrinsics[:, :3, 3])  # -R^T t
    shared_k = bool(np.all(intrinsics == intrinsics[0]))
    directions = pixel_directions(intrinsics[0], height, width) if shared_k else None
    rays = np.empty((len(extrinsics), height * width, 6), np.float32)
    for v in range(len(extrinsics)):
        if not shared_k:
            directions = pixel_directions(intrinsics[v], height, width)
        # Row vectors times R is R^T d: camera directions into the world. A matmul per view
        # writing in place is ~3x faster than one batched matmul over all views.
        np.matmul(directions, rotations[v], out=rays[v, :, 3:])
        rays[v, :, :3] = centres[v]
    return rays.reshape(len(extrinsics), height, width, 6)


def project_points(
    points: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray
) -> np.ndarray:
    """Pixel coordinates (u, v) and depth z of world points in one camera: [N, 3]."""
    in_camera = points @ extrinsics[:3, :3].T + extrinsics[:3, 3]  # [N, 3]
    projected = in_camera @ intrinsics.T
    return np.concatenate([projected[:, :2] / projected[:, 2:3], in_camera[:, 2:3]], axis=1)


# ----------------------------------------------------------------------------------------------
# Ray casting and shading


def make_scene(mesh: Mesh):
    """An open3d RaycastingScene of the mesh, built on one thread (one worker = one core)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene(nthreads=1)
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(mesh.vertices, np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(mesh.triangles, np.uint32)),
    )
    return scene


def cast_primitive_ids(scene, rays: np.ndarray) -> np.ndarray:
    """First triangle hit by each ray of `rays` [..., 6]: uint32 [...], `INVALID_ID` on a miss."""
    import open3d as o3d

    hits = scene.cast_rays(o3d.core.Tensor.from_numpy(np.ascontiguousarray(rays)), nthreads=1)
    return hits["primitive_ids"].numpy()


def hit_faces(scene, rays: np.ndarray) -> np.ndarray:
    """Index of the first triangle each ray hits, -1 on a miss: int64 [...]."""
    faces = cast_primitive_ids(scene, rays).astype(np.int64)
    faces[faces == scene.INVALID_ID] = -1
    return faces


def face_colours(mesh: Mesh, extrinsics: np.ndarray, shading: Shading) -> np.ndarray:
    """Colour of every face in every view, uint8 [V, 1 + F, 3]; row 0 is the background.

    Flat shading makes a face's colour constant within a view, so shading F faces and then
    gathering by the hit face is much cheaper than shading H * W pixels. Surfaces are two-sided:
    a face seen from behind is lit as if its normal faced the camera.
    """
    extrinsics = np.asarray(extrinsics, np.float64).reshape(-1, 4, 4)
    normals = face_normals(mesh.vertices, mesh.triangles)  # [F, 3]
    corners = mesh.vertices[mesh.triangles[:, 0]]  # [F, 3], a point on each face's plane
    rotations = extrinsics[:, :3, :3]
    centres = -np.einsum("vji,vj->vi", rotations, extrinsics[:, :3, 3])  # [V, 3]
    # Which side of each face the camera sees: sign of n . (camera - face), [V, F].
    side = np.sign(centres @ normals.T - np.sum(normals * corners, axis=1))
    light = np.asarray(shading.light_dir, np.float64)
    light_world = np.einsum("vji,j->vi", rotations, light / np.linalg.norm(light))  # R^T l, [V, 3]
    lambert = np.maximum(side * (light_world @ normals.T), 0.0)  # [V, F]
    intensity = shading.ambient + shading.diffuse * lambert
    colours = intensity[..., None] * np.asarray(shading.albedo) * 255.0  # [V, F, 3]
    background = np.broadcast_to(
        np.asarray(shading.background, np.float64), (len(extrinsics), 1, 3)
    )
    table = np.concatenate([background, colours], axis=1)
    return np.clip(table + 0.5, 0, 255).astype(np.uint8)


def render_views(
    mesh: Mesh,
    intrinsics: np.ndarray,
    extrinsics: np.ndarray,
    image_size: int,
    shading: Shading = Shading(),
    scene=None,
) -> np.ndarray:
    """Shaded views of `mesh` from the given cameras: uint8 [V, H, W, 3], H = W = image_size."""
    if scene is None:
        scene = make_scene(mesh)
    rays = camera_rays(intrinsics, extrinsics, image_size, image_size)
    faces = cast_primitive_ids(scene, rays)  # [V, H, W] uint32
    return colour_hits(faces, face_colours(mesh, extrinsics, shading))


def colour_hits(faces: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Images from hit faces [V, H, W] (uint32, INVALID_ID on a miss) and the face colour table
    [V, 1 + F, 3] of `face_colours`: uint8 [V, H, W, 3]."""
    images = np.empty(faces.shape + (3,), np.uint8)
    for v in range(len(faces)):
        # A miss is INVALID_ID = 2**32 - 1, which + 1 wraps to 0: the background row.
        np.take(table[v], faces[v] + np.uint32(1), axis=0, out=images[v])
    return images
