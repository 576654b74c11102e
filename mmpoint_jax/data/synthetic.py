"""Procedural labelled 3D shapes, written in the ShapeNetCore v2 layout (the embedded dataset).

Twelve categories are assembled from a small kit of parts built with open3d's mesh primitives
(boxes, cylinders, rods, tori, spheres) and surfaces of revolution. The same kit is shared across
categories (legs, slabs, pedestals, vessels, handles, rings), proportions are drawn from
overlapping ranges, many parts are optional and every object gets a last random stretch per
axis, so no single global statistic such as the bounding-box aspect ratio separates the classes
(1-NN on any one of four such statistics: under 25 % for 12 classes), while the shape does (a
pair-distance histogram: over 80 %; see tests/test_synthetic.py).

`generate_dataset(out_dir, num_per_class, seed)` writes
`<out>/<synset>/<model_id>/models/model_normalized.obj` plus `taxonomy.json` (synset -> name)
and, when a split is given, ShapeNet's `all.csv` split table (merged with any already there).
Objects are a pure function of (seed, category, index): the same seed rewrites the same files;
another seed gives other objects with other model ids. Synsets are `9xxxxxxx`, outside the
range of real ShapeNet synsets, and ordered like `CATEGORIES`, so the render stage's default
label (the sorted position of the category folder) equals the index in `CATEGORIES` when all
categories are present; render a subset with `class_names=[synset_of(c) for c in CATEGORIES]`
to keep those labels.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mmpoint_jax import io_utils
from mmpoint_jax.data.meshes import Mesh, write_obj

CATEGORIES = (
    "airplane",
    "bench",
    "bottle",
    "bowl",
    "car",
    "chair",
    "lamp",
    "mug",
    "shelf",
    "stool",
    "table",
    "vase",
)
SPLIT_TABLE = "all.csv"  # ShapeNetCore's split file: id,synsetId,subSynsetId,modelId,split
TAXONOMY = "taxonomy.json"
MESH_RELPATH = ("models", "model_normalized.obj")
ROUND_RESOLUTION = 16  # segments around cylinders and surfaces of revolution
STRETCH_LOG_RANGE = 0.25


def synset_of(category: str) -> str:
    return f"9{CATEGORIES.index(category):07d}"


def model_id_of(seed: int, category: str, index: int) -> str:
    """32 hex digits like ShapeNet's, a pure function of (seed, category, index)."""
    return hashlib.blake2b(
        f"mmpoint-synthetic:{seed}:{category}:{index}".encode(), digest_size=16
    ).hexdigest()


# ----------------------------------------------------------------------------------------------
# The part kit. Every part is a Mesh in world units, +Y up; an object is a list of parts.


def _from_open3d(mesh) -> Mesh:
    return Mesh(
        np.asarray(mesh.vertices, np.float64).copy(), np.asarray(mesh.triangles, np.int64).copy()
    )


def _rotation_from_z(direction: np.ndarray) -> np.ndarray:
    """The rotation taking +Z onto `direction` (Rodrigues), [3, 3]."""
    direction = direction / np.linalg.norm(direction)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, direction)
    sine, cosine = np.linalg.norm(axis), float(z @ direction)
    if sine < 1e-9:
        return np.eye(3) if cosine > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / sine
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + sine * cross + (1 - cosine) * cross @ cross


def _placed(mesh: Mesh, rotation: np.ndarray | None = None, offset=(0.0, 0.0, 0.0)) -> Mesh:
    vertices = mesh.vertices if rotation is None else mesh.vertices @ rotation.T
    return Mesh(vertices + np.asarray(offset, np.float64), mesh.triangles)


def box(center, size) -> Mesh:
    import open3d as o3d

    size = np.asarray(size, np.float64)
    return _placed(
        _from_open3d(o3d.geometry.TriangleMesh.create_box(*size)),
        None,
        np.asarray(center) - size / 2,
    )


def rod(start, end, radius: float) -> Mesh:
    """A closed cylinder from `start` to `end`."""
    import open3d as o3d

    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    length = float(np.linalg.norm(end - start))
    cylinder = o3d.geometry.TriangleMesh.create_cylinder(radius, length, ROUND_RESOLUTION, 1)
    return _placed(_from_open3d(cylinder), _rotation_from_z(end - start), (start + end) / 2)


def disc(center, radius: float, thickness: float, axis=(0.0, 1.0, 0.0)) -> Mesh:
    """A flat cylinder around `axis` (round seats, table tops, bases, wheels)."""
    center, axis = np.asarray(center, np.float64), np.asarray(axis, np.float64)
    half = axis / np.linalg.norm(axis) * thickness / 2
    return rod(center - half, center + half, radius)


def ring(center, radius: float, tube: float, axis=(0.0, 1.0, 0.0)) -> Mesh:
    """A torus around `axis` (foot rests, handles, bowl feet, tyres)."""
    import open3d as o3d

    torus = o3d.geometry.TriangleMesh.create_torus(radius, tube, 2 * ROUND_RESOLUTION, 8)
    return _placed(_from_open3d(torus), _rotation_from_z(np.asarray(axis, np.float64)), center)


def ellipsoid(center, radii) -> Mesh:
    import open3d as o3d

    sphere = _from_open3d(o3d.geometry.TriangleMesh.create_sphere(1.0, ROUND_RESOLUTION // 2))
    return Mesh(
        sphere.vertices * np.asarray(radii, np.float64) + np.asarray(center), sphere.triangles
    )


def lathe(radii: Sequence[float], heights: Sequence[float], center=(0.0, 0.0, 0.0)) -> Mesh:
    """Surface of revolution about +Y of the profile (radius_i, height_i); a profile that goes
    up the outside and back down the inside makes a vessel with walls."""
    radii, heights = np.asarray(radii, np.float64), np.asarray(heights, np.float64)
    angles = np.linspace(0.0, 2 * np.pi, ROUND_RESOLUTION, endpoint=False)
    rings = np.stack(
        [
            radii[:, None] * np.cos(angles),
            np.broadcast_to(heights[:, None], (len(radii), len(angles))),
            radii[:, None] * np.sin(angles),
        ],
        axis=-1,
    )  # [P, S, 3]
    profile, segments = len(radii), len(angles)
    i, j = np.meshgrid(np.arange(profile - 1), np.arange(segments), indexing="ij")
    a, b = i * segments + j, i * segments + (j + 1) % segments
    c, d = a + segments, b + segments
    triangles = np.concatenate([np.stack([a, c, b], -1), np.stack([b, c, d], -1)]).reshape(-1, 3)
    return Mesh(rings.reshape(-1, 3) + np.asarray(center), triangles.astype(np.int64))


def merge(parts: Sequence[Mesh]) -> Mesh:
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    return Mesh(
        np.concatenate([p.vertices for p in parts]),
        np.concatenate([p.triangles + o for p, o in zip(parts, offsets, strict=True)]),
    )


# Shared assemblies: the same part types appear in several categories on purpose.


def legs(
    rng,
    top: float,
    half_x: float,
    half_z: float,
    count: int = 4,
    round_: bool | None = None,
    splay: float = 0.0,
    thickness: float | None = None,
) -> list[Mesh]:
    """`count` legs from height `top` to the floor, spread on an ellipse (3) or at the corners."""
    round_ = bool(rng.random() < 0.5) if round_ is None else round_
    thickness = rng.uniform(0.02, 0.045) if thickness is None else thickness
    if count == 4:
        corners = [(sx * half_x, sz * half_z) for sx in (-1, 1) for sz in (-1, 1)]
    else:
        angles = np.linspace(0, 2 * np.pi, count, endpoint=False) + np.pi / 2
        corners = [(half_x * np.cos(a), half_z * np.sin(a)) for a in angles]
    parts = []
    for x, z in corners:
        foot = (x * (1 + splay), 0.0, z * (1 + splay))
        if round_:
            parts.append(rod((x, top, z), foot, thickness))
        else:
            parts.append(
                box(
                    ((x + foot[0]) / 2, top / 2, (z + foot[2]) / 2),
                    (2 * thickness, top, 2 * thickness),
                )
            )
    return parts


def slab(
    rng, center, width: float, depth: float, thickness: float, round_: bool | None = None
) -> Mesh:
    """A seat, a table top or a board: a box or, when round, a disc of diameter `width`."""
    round_ = bool(rng.random() < 0.5) if round_ is None else round_
    if round_:
        return disc(center, width / 2, thickness)
    return box(center, (width, thickness, depth))


def pedestal(rng, top: float, base_radius: float) -> list[Mesh]:
    """A column on a round or square foot (tables, lamps)."""
    foot_height = rng.uniform(0.02, 0.06)
    foot = slab(rng, (0.0, foot_height / 2, 0.0), 2 * base_radius, 2 * base_radius, foot_height)
    return [foot, rod((0.0, foot_height, 0.0), (0.0, top, 0.0), rng.uniform(0.02, 0.06))]


def handle(center, size: float, tube: float) -> Mesh:
    """A ring standing in the XY plane: a mug or vase handle, half sunk into the wall."""
    return ring(center, size, tube, axis=(0.0, 0.0, 1.0))


def vessel(outer_radii, heights, wall: float) -> Mesh:
    """An open vessel: outer profile up, rim, inner profile back down to the floor."""
    outer_radii, heights = np.asarray(outer_radii), np.asarray(heights)
    inner = np.maximum(outer_radii - wall, 0.0)[::-1]
    inner_heights = np.maximum(heights[::-1], heights[0] + wall)
    radii = np.concatenate([[0.0], outer_radii, inner, [0.0]])
    return lathe(radii, np.concatenate([[heights[0]], heights, inner_heights, [heights[0] + wall]]))


# ----------------------------------------------------------------------------------------------
# Categories. Each draws its proportions and optional parts from rng and returns its parts.


def make_chair(rng) -> list[Mesh]:
    width, depth = rng.uniform(0.4, 0.6), rng.uniform(0.38, 0.6)
    seat_y, seat_t = rng.uniform(0.38, 0.55), rng.uniform(0.03, 0.08)
    parts = [slab(rng, (0, seat_y, 0), width, depth, seat_t, round_=False)]
    parts += legs(
        rng, seat_y - seat_t / 2, width / 2 - 0.03, depth / 2 - 0.03, splay=rng.uniform(0, 0.15)
    )
    back_h, back_z = rng.uniform(0.25, 0.7), -depth / 2 + 0.02
    if rng.random() < 0.5:  # solid back
        parts.append(
            box((0, seat_y + back_h / 2, back_z), (width, back_h, rng.uniform(0.02, 0.06)))
        )
    else:  # slats under a top rail
        rail = rng.uniform(0.04, 0.1)
        parts.append(box((0, seat_y + back_h - rail / 2, back_z), (width, rail, 0.04)))
        for x in np.linspace(-width / 2 + 0.03, width / 2 - 0.03, rng.integers(2, 6)):
            parts.append(rod((x, seat_y, back_z), (x, seat_y + back_h - rail, back_z), 0.015))
    if rng.random() < 0.4:  # armrests
        arm_y = seat_y + rng.uniform(0.15, 0.28)
        for x in (-width / 2, width / 2):
            parts.append(box((x, arm_y, 0), (0.05, 0.03, depth)))
            parts.append(rod((x, seat_y, depth / 2 - 0.05), (x, arm_y, depth / 2 - 0.05), 0.015))
    return parts


def make_table(rng) -> list[Mesh]:
    width, height = rng.uniform(0.7, 1.8), rng.uniform(0.45, 0.8)
    depth, top_t = (
        rng.uniform(0.5, 1.0) * (width if rng.random() < 0.3 else 1.0),
        rng.uniform(0.03, 0.07),
    )
    round_top = bool(rng.random() < 0.3)
    parts = [slab(rng, (0, height, 0), width, depth, top_t, round_=round_top)]
    if rng.random() < 0.3:
        parts += pedestal(rng, height - top_t / 2, rng.uniform(0.15, 0.35))
    else:
        half_x = (width / 2 - 0.05) * (0.7 if round_top else 1.0)
        half_z = (depth / 2 - 0.05) * (0.7 if round_top else 1.0)
        parts += legs(rng, height - top_t / 2, half_x, half_z)
        if rng.random() < 0.3:  # lower shelf, as on a shelf
            parts.append(
                box((0, height * rng.uniform(0.15, 0.35), 0), (2 * half_x, 0.02, 2 * half_z))
            )
    return parts


def make_stool(rng) -> list[Mesh]:
    radius, height = rng.uniform(0.15, 0.26), rng.uniform(0.42, 0.8)
    seat_t = rng.uniform(0.03, 0.08)
    parts = [
        slab(rng, (0, height, 0), 2 * radius, 2 * radius, seat_t, round_=bool(rng.random() < 0.7))
    ]
    count = int(rng.choice([3, 4]))
    spread = radius * rng.uniform(0.6, 0.85)
    splay = rng.uniform(0.0, 0.5)
    parts += legs(rng, height - seat_t / 2, spread, spread, count=count, round_=True, splay=splay)
    if rng.random() < 0.5:  # foot rest ring
        ring_y = height * rng.uniform(0.25, 0.4)
        parts.append(ring((0, ring_y, 0), spread * (1 + splay * (1 - ring_y / height)), 0.012))
    return parts


def make_bench(rng) -> list[Mesh]:
    width, depth = rng.uniform(0.9, 1.8), rng.uniform(0.28, 0.45)
    seat_y, seat_t = rng.uniform(0.38, 0.5), rng.uniform(0.03, 0.07)
    parts = [box((0, seat_y, 0), (width, seat_t, depth))]
    if rng.random() < 0.5:
        parts += legs(rng, seat_y - seat_t / 2, width / 2 - 0.05, depth / 2 - 0.03)
    else:  # panel ends
        for x in (-width / 2 + 0.03, width / 2 - 0.03):
            parts.append(box((x, (seat_y - seat_t / 2) / 2, 0), (0.04, seat_y - seat_t / 2, depth)))
    if rng.random() < 0.5:  # back
        back_h = rng.uniform(0.2, 0.45)
        parts.append(box((0, seat_y + back_h / 2 + 0.05, -depth / 2), (width, back_h, 0.03)))
        for x in (-width / 2 + 0.05, width / 2 - 0.05):
            parts.append(rod((x, seat_y, -depth / 2), (x, seat_y + 0.06, -depth / 2), 0.015))
    return parts


def make_shelf(rng) -> list[Mesh]:
    width, height, depth = rng.uniform(0.5, 1.2), rng.uniform(0.7, 2.0), rng.uniform(0.25, 0.45)
    board = rng.uniform(0.015, 0.04)
    lift = rng.uniform(0.08, 0.2) if rng.random() < 0.3 else 0.0
    parts = [
        box((x, lift + height / 2, 0), (board, height, depth)) for x in (-width / 2, width / 2)
    ]
    for y in np.linspace(lift, lift + height, int(rng.integers(3, 7))):
        parts.append(box((0, y, 0), (width, board, depth)))
    if rng.random() < 0.6:
        parts.append(box((0, lift + height / 2, -depth / 2), (width, height, board)))
    if lift:
        parts += legs(rng, lift, width / 2, depth / 2 - 0.02, thickness=0.025)
    return parts


def make_lamp(rng) -> list[Mesh]:
    height = rng.uniform(0.4, 1.6)
    parts = pedestal(rng, height, rng.uniform(0.1, 0.25))
    top = np.array([0.0, height, 0.0])
    if rng.random() < 0.4:  # bent arm
        top = top + np.array([rng.uniform(0.15, 0.4), rng.uniform(-0.05, 0.15), 0.0])
        parts.append(rod((0, height, 0), top, 0.018))
    bottom_r, top_r = rng.uniform(0.12, 0.3), rng.uniform(0.05, 0.2)
    shade_h = rng.uniform(0.12, 0.35)
    shade_bottom = top[1] - shade_h * rng.uniform(0.3, 0.7)
    parts.append(
        lathe([bottom_r, top_r], [shade_bottom, shade_bottom + shade_h], (top[0], 0.0, top[2]))
    )
    if rng.random() < 0.5:
        parts.append(ellipsoid(top, (0.05, 0.07, 0.05)))
    return parts


def make_mug(rng) -> list[Mesh]:
    radius, height = rng.uniform(0.3, 0.5), rng.uniform(0.5, 1.2)
    taper = rng.uniform(0.8, 1.1)
    heights = np.linspace(0, height, 5)
    parts = [vessel(radius * np.linspace(taper, 1.0, 5), heights, rng.uniform(0.02, 0.05))]
    size = height * rng.uniform(0.25, 0.4)
    parts.append(
        handle((radius, height * rng.uniform(0.4, 0.6), 0), size, rng.uniform(0.025, 0.05))
    )
    return parts


def make_bowl(rng) -> list[Mesh]:
    radius, depth = rng.uniform(0.4, 0.7), rng.uniform(0.25, 0.6)
    angles = np.linspace(0.15, np.pi / 2, 7)
    radii, heights = radius * np.sin(angles), depth * radius * (1 - np.cos(angles))
    parts = [vessel(radii, heights, rng.uniform(0.02, 0.05))]
    if rng.random() < 0.5:  # foot ring
        parts.append(ring((0, 0.0, 0), radii[0] * rng.uniform(1.0, 1.6), rng.uniform(0.015, 0.03)))
    return parts


def make_bottle(rng) -> list[Mesh]:
    radius, body = rng.uniform(0.15, 0.35), rng.uniform(0.4, 1.1)
    neck_r, neck_h = radius * rng.uniform(0.25, 0.45), rng.uniform(0.1, 0.35)
    shoulder = rng.uniform(0.08, 0.3)
    radii = [0.0, radius, radius, radius * 0.7, neck_r, neck_r, 0.0]
    heights = [
        0.0,
        0.0,
        body,
        body + shoulder * 0.6,
        body + shoulder,
        body + shoulder + neck_h,
        body + shoulder + neck_h,
    ]
    parts = [lathe(radii, heights)]
    if rng.random() < 0.5:  # cap
        cap_y = body + shoulder + neck_h
        parts.append(disc((0, cap_y + 0.02, 0), neck_r * 1.15, rng.uniform(0.03, 0.08)))
    return parts


def make_vase(rng) -> list[Mesh]:
    base_r, height = rng.uniform(0.12, 0.3), rng.uniform(0.6, 1.6)
    belly_r, neck_r = base_r * rng.uniform(1.2, 2.2), base_r * rng.uniform(0.5, 1.0)
    mouth_r = neck_r * rng.uniform(1.0, 1.8)
    fractions = np.array([0.0, rng.uniform(0.3, 0.5), rng.uniform(0.7, 0.85), 1.0])
    parts = [
        vessel([base_r, belly_r, neck_r, mouth_r], fractions * height, rng.uniform(0.015, 0.04))
    ]
    if rng.random() < 0.25:  # handles, as on a mug
        for side in (-1, 1):
            parts.append(handle((side * neck_r, height * 0.75, 0), height * 0.12, 0.02))
    return parts


def make_airplane(rng) -> list[Mesh]:
    length, radius = rng.uniform(1.4, 3.0), rng.uniform(0.07, 0.18)
    parts = [rod((-length / 2, 0, 0), (length / 2, 0, 0), radius)]
    parts.append(ellipsoid((length / 2, 0, 0), (radius * rng.uniform(1.5, 3.0), radius, radius)))
    span, chord = rng.uniform(1.0, 3.0), rng.uniform(0.2, 0.5)
    wing_x = rng.uniform(-0.1, 0.15) * length
    sweep = rng.uniform(0.0, 0.6)
    for side in (-1, 1):
        tip = np.array([wing_x - sweep * span / 2, rng.uniform(0.0, 0.1), side * span / 2])
        root = np.array([wing_x, 0.0, 0.0])
        direction = tip - root
        wing = box((0, 0, 0), (np.linalg.norm(direction), 0.03, chord))
        rotation = _rotation_from_z(direction) @ np.array([[0, 0, -1.0], [0, 1.0, 0], [1.0, 0, 0]])
        parts.append(_placed(wing, rotation, (root + tip) / 2))
        if rng.random() < 0.6:  # engine under the wing
            z = side * span * rng.uniform(0.2, 0.35)
            x = wing_x - sweep * abs(z)
            parts.append(rod((x - 0.25, -0.1, z), (x + 0.2, -0.1, z), rng.uniform(0.04, 0.09)))
    tail_x = -length / 2 + 0.1
    parts.append(box((tail_x, radius + 0.15, 0), (0.25, rng.uniform(0.2, 0.45), 0.03)))
    parts.append(box((tail_x, radius * 0.5, 0), (0.2, 0.02, span * rng.uniform(0.25, 0.4))))
    return parts


def make_car(rng) -> list[Mesh]:
    length, width = rng.uniform(1.5, 2.4), rng.uniform(0.7, 0.95)
    wheel_r = rng.uniform(0.13, 0.22)
    body_h = rng.uniform(0.22, 0.4)
    body_y = wheel_r + body_h / 2 - 0.05
    parts = [box((0, body_y, 0), (length, body_h, width))]
    cabin_l, cabin_h = length * rng.uniform(0.35, 0.65), rng.uniform(0.18, 0.35)
    parts.append(
        box(
            (rng.uniform(-0.15, 0.05) * length, body_y + body_h / 2 + cabin_h / 2, 0),
            (cabin_l, cabin_h, width * 0.9),
        )
    )
    wheelbase = length * rng.uniform(0.3, 0.38)
    for x in (-wheelbase, wheelbase):
        for z in (-width / 2, width / 2):
            parts.append(disc((x, wheel_r, z), wheel_r, 0.12, axis=(0.0, 0.0, 1.0)))
    if rng.random() < 0.3:  # spoiler on posts
        top = body_y + body_h / 2
        parts.append(box((-length / 2 + 0.1, top + 0.12, 0), (0.15, 0.02, width)))
        for z in (-width / 3, width / 3):
            parts.append(
                rod((-length / 2 + 0.1, top, z), (-length / 2 + 0.1, top + 0.12, z), 0.015)
            )
    return parts


BUILDERS: dict[str, Callable[[np.random.Generator], list[Mesh]]] = {
    "airplane": make_airplane,
    "bench": make_bench,
    "bottle": make_bottle,
    "bowl": make_bowl,
    "car": make_car,
    "chair": make_chair,
    "lamp": make_lamp,
    "mug": make_mug,
    "shelf": make_shelf,
    "stool": make_stool,
    "table": make_table,
    "vase": make_vase,
}
assert tuple(sorted(BUILDERS)) == CATEGORIES


def make_shape(category: str, seed: int, index: int) -> Mesh:
    """Object `index` of `category` for `seed` (a pure function of the three)."""
    if category not in BUILDERS:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    entropy = int.from_bytes(bytes.fromhex(model_id_of(seed, category, index))[:8], "little")
    rng = np.random.default_rng(entropy)
    mesh = merge(BUILDERS[category](rng))
    # A last stretch of up to ~28% per axis blurs the aspect ratios that would otherwise give a
    # category away (bounding-box statistics alone then classify far worse than the shape does).
    stretch = np.exp(rng.uniform(-STRETCH_LOG_RANGE, STRETCH_LOG_RANGE, size=3))
    return Mesh(mesh.vertices * stretch, mesh.triangles)


# ----------------------------------------------------------------------------------------------
# Writing a dataset


def _write_taxonomy(out_dir: Path) -> None:
    entries = [{"synsetId": synset_of(c), "name": c, "children": []} for c in CATEGORIES]
    io_utils.atomic_write_json(out_dir / TAXONOMY, entries)


def read_split_table(path: str | os.PathLike) -> dict[tuple[str, str], str]:
    """ShapeNet's `all.csv`: (synsetId, modelId) -> split."""
    with open(path, newline="", encoding="utf-8") as f:
        return {(row["synsetId"], row["modelId"]): row["split"] for row in csv.DictReader(f)}


def _merge_split_table(out_dir: Path, new: dict[tuple[str, str], str]) -> None:
    path = out_dir / SPLIT_TABLE
    table = read_split_table(path) if path.exists() else {}
    table.update(new)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "synsetId", "subSynsetId", "modelId", "split"])
    for number, ((synset, model), split) in enumerate(sorted(table.items())):
        writer.writerow([number, synset, synset, model, split])
    io_utils.atomic_write_text(path, buffer.getvalue())


def generate_dataset(
    out_dir: str | os.PathLike,
    num_per_class: int,
    seed: int,
    categories: Sequence[str] | None = None,
    split: str | None = None,
) -> list[tuple[Path, int]]:
    """Writes `num_per_class` objects of each category; returns [(mesh_path, label)].

    `label` is the index in `CATEGORIES`. With `split`, the objects are entered under that
    split in `<out>/all.csv`, so one folder can hold e.g. a train and a test set drawn with
    different seeds.
    """
    if num_per_class < 0:
        raise ValueError(f"num_per_class must be >= 0, got {num_per_class}")
    categories = list(CATEGORIES if categories is None else categories)
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown categories {unknown}; expected names from {CATEGORIES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, splits = [], {}
    for category in sorted(categories, key=CATEGORIES.index):
        for index in range(num_per_class):
            model_id = model_id_of(seed, category, index)
            path = out_dir.joinpath(synset_of(category), model_id, *MESH_RELPATH)
            write_obj(path, make_shape(category, seed, index))
            written.append((path, CATEGORIES.index(category)))
            splits[(synset_of(category), model_id)] = split
    _write_taxonomy(out_dir)
    if split is not None:
        _merge_split_table(out_dir, splits)
    return written


def read_taxonomy_names(root: str | os.PathLike) -> dict[str, str]:
    """synsetId -> first name of ShapeNet's `taxonomy.json` ({} when there is none)."""
    path = Path(root) / TAXONOMY
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return {e["synsetId"]: str(e["name"]).split(",")[0] for e in entries if "synsetId" in e}
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}  # an unexpected taxonomy only costs readable names; folders still label
