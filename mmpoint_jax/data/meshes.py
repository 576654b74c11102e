"""Triangle meshes for the render stage: reading, checking, normalising and surface sampling.

A mesh here is a plain `Mesh(vertices [V, 3] float64, triangles [F, 3] int64)`, so everything
after loading is numpy and testable without open3d. open3d is imported lazily, only to read the
formats it knows (`.obj`, `.ply`, `.stl`); `.off` has its own reader because ModelNet's files
often fuse the header and the counts on the first line (`OFF1046 900 0`), which open3d rejects.

Problems with a mesh raise `MeshError(kind, detail)`: the render stage skips the object and lists
`kind: detail` in its manifest. `kind` is a short stable key (`unreadable`, `empty`,
`non-finite`, `bad-faces`, `degenerate`) that summaries group by.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

MESH_SUFFIXES = (".obj", ".off", ".ply", ".stl")
SAMPLING_METHODS = ("uniform", "poisson")
# Poisson-disk sampling picks its points from this many times more uniform candidates.
POISSON_CANDIDATE_FACTOR = 4


class MeshError(ValueError):
    """A mesh that cannot be used; `kind` is a short key, `detail` says what is wrong."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class Mesh(NamedTuple):
    vertices: np.ndarray  # [V, 3] float64
    triangles: np.ndarray  # [F, 3] int64


# ----------------------------------------------------------------------------------------------
# Reading


def load_mesh(path: str | os.PathLike) -> Mesh:
    """Reads a `.off`, `.obj`, `.ply` or `.stl` file; raises MeshError naming the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise MeshError("unreadable", f"{path}: unsupported mesh suffix {suffix!r}")
    if not path.is_file():
        raise MeshError("unreadable", f"{path}: file not found")
    if suffix == ".off":
        return read_off(path)
    return _read_with_open3d(path)


def _read_with_open3d(path: Path) -> Mesh:
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    try:
        mesh = o3d.io.read_triangle_mesh(
            str(path), enable_post_processing=False, print_progress=False
        )
    except Exception as e:  # noqa: BLE001 - open3d raises RuntimeError and others on bad files
        raise MeshError("unreadable", f"{path}: {type(e).__name__}: {e}") from None
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    triangles = np.asarray(mesh.triangles, dtype=np.int64)
    if len(vertices) == 0 and len(triangles) == 0 and path.stat().st_size > 0:
        # open3d reports failures by returning an empty mesh, not by raising.
        raise MeshError("unreadable", f"{path}: open3d read no vertices or faces")
    return Mesh(vertices.reshape(-1, 3), triangles.reshape(-1, 3))


def read_off(path: str | os.PathLike) -> Mesh:
    """Object File Format reader; polygons with more than 3 corners are split into fans."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as e:
        raise MeshError("unreadable", f"{path}: {e}") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    tokens = " ".join(line for line in lines if line).split()
    if not tokens or not tokens[0].upper().startswith("OFF"):
        raise MeshError("unreadable", f"{path}: not an OFF file (first token {tokens[:1]})")
    fused = tokens[0][3:]  # ModelNet quirk: 'OFF1046 900 0' puts the vertex count on the header
    tokens = ([fused] if fused else []) + tokens[1:]
    try:
        num_vertices, num_faces = int(tokens[0]), int(tokens[1])
        body = np.asarray(tokens[3:], dtype=np.float64)
    except (IndexError, ValueError) as e:
        raise MeshError("unreadable", f"{path}: malformed OFF counts or numbers ({e})") from None
    if len(body) < 3 * num_vertices:
        raise MeshError("unreadable", f"{path}: OFF file ends inside its {num_vertices} vertices")
    vertices = body[: 3 * num_vertices].reshape(num_vertices, 3)
    return Mesh(vertices, _off_faces(body[3 * num_vertices :], num_faces, path))


def _off_faces(values: np.ndarray, num_faces: int, path: Path) -> np.ndarray:
    """Triangles from the OFF face list `k i1 .. ik` (k may vary per face)."""
    if num_faces == 0:
        return np.zeros((0, 3), np.int64)
    # Fast path: an all-triangle list is a (F, 4) table whose first column is 3.
    if len(values) >= 4 * num_faces:
        table = values[: 4 * num_faces].reshape(num_faces, 4)
        if np.all(table[:, 0] == 3):
            return table[:, 1:].astype(np.int64)
    triangles = []
    cursor = 0
    for face in range(num_faces):
        if cursor >= len(values):
            raise MeshError("unreadable", f"{path}: OFF file ends at face {face} of {num_faces}")
        corners = int(values[cursor])
        polygon = values[cursor + 1 : cursor + 1 + corners].astype(np.int64)
        if corners < 3 or len(polygon) != corners:
            raise MeshError("bad-faces", f"{path}: face {face} has {corners} corners")
        cursor += 1 + corners
        for k in range(1, corners - 1):
            triangles.append((polygon[0], polygon[k], polygon[k + 1]))
    return np.asarray(triangles, np.int64).reshape(-1, 3)


def write_obj(path: str | os.PathLike, mesh: Mesh) -> None:
    """Writes a minimal Wavefront OBJ (vertices and faces only) atomically."""
    from mmpoint_jax import io_utils

    vertex_lines = "\n".join(f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in mesh.vertices)
    face_lines = "\n".join(f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.triangles)
    io_utils.atomic_write_text(path, f"{vertex_lines}\n{face_lines}\n")


# ----------------------------------------------------------------------------------------------
# Checking and normalising


def triangle_areas(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    corners = vertices[triangles]  # [F, 3, 3]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # [F, 3]
    return 0.5 * np.linalg.norm(cross, axis=1)  # [F]


def clean_mesh(mesh: Mesh, where: str = "") -> Mesh:
    """Checks a mesh and keeps only what can be sampled and ray cast.

    Rejects (MeshError) meshes without faces, with face indices out of range, with non-finite
    coordinates on used vertices, or with zero total area; drops zero-area triangles and unused
    vertices (so a stray far-away vertex cannot shrink the object during normalisation).
    """
    prefix = f"{where}: " if where else ""
    vertices, triangles = mesh
    if len(vertices) == 0 or len(triangles) == 0:
        raise MeshError("empty", f"{prefix}{len(vertices)} vertices, {len(triangles)} faces")
    if triangles.min() < 0 or triangles.max() >= len(vertices):
        raise MeshError(
            "bad-faces",
            f"{prefix}face indices span [{triangles.min()}, {triangles.max()}], "
            f"mesh has {len(vertices)} vertices",
        )
    used = np.unique(triangles)
    if not np.all(np.isfinite(vertices[used])):
        raise MeshError("non-finite", f"{prefix}vertex coordinates contain NaN or Inf")
    areas = triangle_areas(vertices, triangles)
    keep = areas > 1e-12 * max(float(areas.max()), 1e-300)
    if not np.any(areas > 0) or not np.any(keep):
        raise MeshError("degenerate", f"{prefix}all {len(triangles)} faces have zero area")
    triangles = triangles[keep]
    used, remapped = np.unique(triangles, return_inverse=True)
    return Mesh(vertices[used], remapped.reshape(-1, 3).astype(np.int64))


def normalise(mesh: Mesh) -> Mesh:
    """Moves the surface's area-weighted centroid to the origin, scales into the unit sphere.

    The area-weighted centroid is the mean of uniform surface samples, so sampled points come out
    centred; the farthest surface point of a triangle mesh is a vertex, so every sample lies in
    the unit sphere and the farthest vertex on it.
    """
    vertices, triangles = mesh
    areas = triangle_areas(vertices, triangles)  # [F]
    centroids = vertices[triangles].mean(axis=1)  # [F, 3]
    centre = (areas[:, None] * centroids).sum(axis=0) / areas.sum()
    centred = vertices - centre
    radius = float(np.linalg.norm(centred, axis=1).max())
    if not radius > 0:
        raise MeshError("degenerate", "all vertices coincide")
    return Mesh(centred / radius, triangles)


def prepare_mesh(path: str | os.PathLike) -> Mesh:
    """load -> clean -> normalise: the mesh every view and point of an object comes from."""
    return normalise(clean_mesh(load_mesh(path), where=str(path)))


# ----------------------------------------------------------------------------------------------
# Surface sampling


def face_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    corners = vertices[triangles]  # [F, 3, 3]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return cross / np.maximum(np.linalg.norm(cross, axis=1, keepdims=True), 1e-300)  # [F, 3]


def sample_uniform(
    mesh: Mesh, num_points: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`num_points` points uniform by area, with the normals of their faces: ([N, 3], [N, 3])."""
    vertices, triangles = mesh
    cumulative = np.cumsum(triangle_areas(vertices, triangles))  # [F]
    picks = rng.random(num_points) * cumulative[-1]
    faces = np.minimum(np.searchsorted(cumulative, picks, side="right"), len(triangles) - 1)  # [N]
    # sqrt warps the unit square onto the triangle with uniform density (Osada et al. 2002).
    root_u, v = np.sqrt(rng.random(num_points)), rng.random(num_points)
    weights = np.stack([1.0 - root_u, root_u * (1.0 - v), root_u * v], axis=1)  # [N, 3]
    corners = vertices[triangles[faces]]  # [N, 3, 3]
    points = np.einsum("nk,nkc->nc", weights, corners)
    return points, face_normals(vertices, triangles)[faces]


def farthest_point_indices(points: np.ndarray, count: int) -> np.ndarray:
    """Greedy farthest-point order from point 0: `count` indices, each farthest from the rest."""
    points = np.asarray(points, np.float64)
    squared_norms = np.einsum("nc,nc->n", points, points)  # [N]
    chosen = np.zeros(count, np.int64)
    nearest = np.full(len(points), np.inf)
    for i in range(1, count):
        last = points[chosen[i - 1]]
        # |p - q|^2 = |p|^2 - 2 p.q + |q|^2: one matrix-vector product per step.
        np.minimum(nearest, squared_norms - 2.0 * (points @ last) + last @ last, out=nearest)
        chosen[i] = int(np.argmax(nearest))
    return chosen


def sample_surface(
    mesh: Mesh, num_points: int, rng: np.random.Generator, method: str = "uniform"
) -> tuple[np.ndarray, np.ndarray]:
    """Surface points and unit normals, float32 `[N, 3]` each.

    `uniform`: independent samples, uniform by area. `poisson`: blue-noise points (no two close
    together) taken by farthest-point selection from 4N uniform candidates, an approximation of
    Poisson-disk sampling that, unlike open3d's, is reproducible from `rng`.
    """
    if num_points <= 0:
        raise ValueError(f"num_points must be > 0, got {num_points}")
    if method == "uniform":
        points, normals = sample_uniform(mesh, num_points, rng)
    elif method == "poisson":
        candidates, candidate_normals = sample_uniform(
            mesh, POISSON_CANDIDATE_FACTOR * num_points, rng
        )
        keep = farthest_point_indices(candidates, num_points)
        points, normals = candidates[keep], candidate_normals[keep]
    else:
        raise ValueError(f"unknown sampling method {method!r}; expected one of {SAMPLING_METHODS}")
    return points.astype(np.float32), normals.astype(np.float32)


def normalise_points(points: np.ndarray) -> np.ndarray:
    """CrossPoint/PointNet point normalisation: subtract the centroid, divide by the max norm."""
    centred = points - points.mean(axis=0)
    radius = float(np.linalg.norm(centred, axis=1).max())
    return centred / radius if radius > 0 else centred
