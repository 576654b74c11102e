"""Render-stage speed: raw ray casting, one worker's whole per-object pipeline, and the job.

  python bench/render.py                      # 224 and 128 px, 24 views, 1 and 2 workers
  python bench/render.py --objects=12 --stage-objects=24 --sizes=128 --workers=1

Rows (JSON, one per line, see bench/common.py):
* `raycast`: open3d ray casting alone, one thread, views/s (rays prepared beforehand).
* `render_object`: everything one worker does per object except writing (load, clean,
  normalise, sample points, cameras, rays, cast, shade, PNG, encode), views/s, with each
  phase's share of the time and `kept_of_raycast` = this rate / the raw ray-casting rate.
* `stage`: `render_stage.run` end to end (spawned workers, shards written), objects/s per worker
  count; `speedup` is relative to the first worker count. Starting a worker (spawn, imports)
  takes about a second, which a run of a few dozen objects does not amortise.
Every row carries the 1-minute load average: on a shared machine, numbers taken above ~1.5
are noisy.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import add_repo_to_path, emit, row, time_repeats

add_repo_to_path()

from mmpoint_jax import config_lib  # noqa: E402
from mmpoint_jax.data import meshes, records, render, render_stage, synthetic  # noqa: E402

CONFIG_FILE = Path(__file__).resolve().parents[1] / "configs" / "render.py"
PHASES = ("load", "sample", "rays", "raycast", "shade", "png_encode")


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _objects(root: Path, count: int) -> list[Path]:
    """`count` procedural meshes, categories in turn (a mix of part counts and sizes)."""
    per_class = -(-count // len(synthetic.CATEGORIES))
    written = synthetic.generate_dataset(root, per_class, seed=0)  # category by category
    round_robin = sorted(range(len(written)), key=lambda i: (i % per_class, i // per_class))
    return [written[i][0] for i in round_robin[:count]]


def bench_raycast(paths, size, views, repeats):
    prepared = []
    for i, path in enumerate(paths):
        mesh = meshes.prepare_mesh(path)
        k, e = render.sample_cameras(render.PRESETS["r2n2"], views, size, np.random.default_rng(i))
        prepared.append((render.make_scene(mesh), render.camera_rays(k, e, size, size)))
    times = time_repeats(lambda: [render.cast_primitive_ids(s, r) for s, r in prepared], repeats)
    config = {"image_size": size, "views": views, "objects": len(paths), "threads": 1}
    return row("raycast", config, times, views=views * len(paths), load_avg=_load())


def _one_object(path, size, views, points, seed, clock):
    """A worker's per-object pipeline, phase by phase (the calls of render_stage.build_record)."""
    t0 = time.perf_counter()
    mesh = meshes.prepare_mesh(path)
    t1 = time.perf_counter()
    cloud, normals = meshes.sample_surface(mesh, points, np.random.default_rng(seed))
    t2 = time.perf_counter()
    k, e = render.sample_cameras(render.PRESETS["r2n2"], views, size, np.random.default_rng(seed))
    rays = render.camera_rays(k, e, size, size)
    scene = render.make_scene(mesh)
    t3 = time.perf_counter()
    faces = render.cast_primitive_ids(scene, rays)
    t4 = time.perf_counter()
    images = render.colour_hits(faces, render.face_colours(mesh, e, render.Shading()))
    t5 = time.perf_counter()
    pngs = [records.encode_png(image) for image in images]
    records.encode(
        object_id=str(path), points=cloud, normals=normals, views=pngs, intrinsics=k, extrinsics=e
    )
    t6 = time.perf_counter()
    for phase, seconds in zip(PHASES, np.diff([t0, t1, t2, t3, t4, t5, t6]), strict=True):
        clock[phase] += seconds


def bench_render_object(paths, size, views, points, repeats, raycast_views_per_s):
    clock = dict.fromkeys(PHASES, 0.0)
    times = time_repeats(
        lambda: [_one_object(p, size, views, points, i, clock) for i, p in enumerate(paths)],
        repeats,
    )
    total = sum(clock.values())
    config = {"image_size": size, "views": views, "points": points, "objects": len(paths)}
    result = row("render_object", config, times, views=views * len(paths), load_avg=_load())
    result["phase_share"] = {phase: round(seconds / total, 3) for phase, seconds in clock.items()}
    result["kept_of_raycast"] = round(result["views_per_s"] / raycast_views_per_s, 3)
    return result


def bench_stage(input_dir, size, views, points, workers, repeats, work_root):
    def once():
        output = Path(tempfile.mkdtemp(dir=work_root))
        values = {"input": str(input_dir), "output": str(output), "workers": workers,
                  "views": views, "image_size": size, "points": points,
                  "objects_per_shard": 2}  # fmt: skip
        render_stage.run(config_lib.load_config(str(CONFIG_FILE), values))
        shutil.rmtree(output)

    cpu_before = _children_cpu_s()
    times = time_repeats(once, repeats, warmup=1)
    worker_cpu = (_children_cpu_s() - cpu_before) / (repeats + 1)  # the warm-up ran too
    count = len(list(Path(input_dir).glob("*/*/models/model_normalized.obj")))
    config = {
        "image_size": size,
        "views": views,
        "points": points,
        "objects": count,
        "workers": workers,
    }
    result = row("stage", config, times, objects=count, views=views * count, load_avg=_load())
    # CPU seconds the workers spent per object: equal for 1 and 2 workers means the wall-clock
    # speed-up is limited only by free cores (and worker start-up), whatever others run.
    result["worker_cpu_s_per_object"] = round(worker_cpu / count, 4)
    return result


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=24, help="for the per-object rows")
    parser.add_argument("--stage-objects", type=int, default=48, help="for the stage rows")
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--sizes", default="224,128")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("MMPOINT_NO_PROGRESS", "1")

    with tempfile.TemporaryDirectory() as work:
        work_root = Path(work)
        stage_paths = _objects(work_root / "shapes", max(args.objects, args.stage_objects))
        paths = stage_paths[: args.objects]
        stage_input = work_root / "stage_input"
        for path in stage_paths[: args.stage_objects]:  # as their own ShapeNet-layout folder
            target = stage_input / path.relative_to(work_root / "shapes")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        sizes = [int(s) for s in args.sizes.split(",")]
        for size in sizes:
            raw = bench_raycast(paths, size, args.views, args.repeats)
            emit(raw)
            emit(
                bench_render_object(
                    paths, size, args.views, args.points, args.repeats, raw["views_per_s"]
                )
            )
        baseline = None
        for workers in (int(w) for w in args.workers.split(",")):
            result = bench_stage(
                stage_input, sizes[0], args.views, args.points, workers, args.repeats, work_root
            )
            baseline = baseline or result["objects_per_s"]
            result["speedup"] = round(result["objects_per_s"] / baseline, 3)
            emit(result)


if __name__ == "__main__":
    main()
