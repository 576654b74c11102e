"""Input pipeline and on-device augmentation throughput (issue 5), one JSON row per measurement.

  .venv/bin/python bench/pipeline.py                     # temporary synthetic shards
  .venv/bin/python bench/pipeline.py --records=DIR --split=train   # a render-stage folder

Rows: `pipeline_decode` (one object decoded in this process, no grain), `pipeline` (objects/s
delivered by PretrainPipeline, m views at the image size, per worker count; the first batch,
which pays for starting the workers, is not timed), `augment_points` / `augment_views` /
`augment_batch` (the jitted augmentations of one batch on the default device, as the train step
runs them: two point clouds plus the view ladder).
Target (issue 5): the pipeline delivers >= 5x the objects/s that the train step consumes.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import common  # bench/common.py, beside this file

common.add_repo_to_path()


def _write_synthetic(records_dir: str, args) -> None:
    """Records like the render stage's: 2048 points, V views of smooth shaded PNGs.

    A pool of distinct views is PNG-encoded once and shared between objects, so the folder is
    written in seconds while every record keeps realistic PNG sizes and decode costs.
    """
    import numpy as np

    from mmpoint_jax.data import pipeline_testing, records

    rng = np.random.default_rng(0)
    pool = [records.encode_png(v) for v in pipeline_testing.smooth_views(rng, 64, args.stored_size)]
    blobs = []
    for i in range(args.num_objects):
        chosen = rng.choice(len(pool), size=args.stored_views, replace=False)
        blobs.append(
            records.encode(
                object_id=f"obj{i:06d}",
                points=rng.normal(size=(2048, 3)).astype(np.float32),
                views=[pool[j] for j in chosen],
                label=i % 10,
            )
        )
    shards = [blobs[i :: args.num_shards] for i in range(args.num_shards)]
    pipeline_testing.write_split(records_dir, "train", shards)
    png_kb = np.mean([len(p) for p in pool]) / 1024
    common.emit(
        {"name": "synthetic_records", "objects": args.num_objects, "mean_png_kb": round(png_kb, 1)}
    )


def _bench_decode(records_dir: str, split: str, args) -> None:
    from mmpoint_jax.data import pipeline

    shards = pipeline.open_split(records_dir, split)
    layout = pipeline.StreamLayout(shards.num_records, args.batch_size, 0, 1, seed=0)
    load = pipeline.LoadPretrainExample(
        shards,
        layout,
        num_views=args.views,
        image_size=(args.image_size, args.image_size),
        num_points=args.points,
        view_selection="random",
        skip_bad_records=False,
    )
    counter = iter(range(10**9))
    times = common.time_repeats(lambda: [load.map(next(counter)) for _ in range(16)], repeats=5)
    config = {"views": args.views, "image_size": args.image_size, "threads": 1}
    common.emit(common.row("pipeline_decode", config, times, objects=16))


def _bench_pipeline(records_dir: str, split: str, workers: int, args) -> None:
    from mmpoint_jax.data import pipeline

    pipe = pipeline.PretrainPipeline(
        records_dir,
        split,
        global_batch_size=args.batch_size,
        num_views=args.views,
        image_size=args.image_size,
        num_points=args.points,
        seed=0,
        num_workers=workers,
        process_index=0,
        process_count=1,
        num_threads=args.threads,
        prefetch_batches=args.prefetch,
    )
    with pipe:
        start = time.perf_counter()
        next(pipe)
        first_batch_s = time.perf_counter() - start
        times = common.time_repeats(
            lambda: [next(pipe) for _ in range(args.batches)], repeats=5, warmup=1
        )
    config = {
        "workers": workers,
        "threads": args.threads,
        "batch": args.batch_size,
        "views": args.views,
        "image_size": args.image_size,
        "points": args.points,
    }
    common.emit(
        common.row(
            "pipeline",
            config,
            times,
            objects=args.batches * args.batch_size,
            first_batch_s=round(first_batch_s, 3),
            children_peak_rss_mb=round(common.peak_children_rss_mb(), 1),
        )
    )


def _bench_augment(args) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mmpoint_jax.augment import images, keys, points
    from mmpoint_jax.data import pipeline_testing

    rng = np.random.default_rng(0)
    b, m = args.batch_size, args.views
    cloud = jnp.asarray(rng.normal(size=(b, args.points, 3)).astype(np.float32))
    views = jnp.asarray(
        np.stack([pipeline_testing.smooth_views(rng, m, args.image_size) for _ in range(b)])
    )
    example_keys = keys.example_keys(0, 3, np.arange(b))
    point_cfg, image_cfg = points.default_point_aug_config(), images.default_image_aug_config()

    def both_clouds(p, k):
        first = points.augment_points(p, keys.stream_keys(k, keys.POINTS_FIRST), point_cfg)
        second = points.augment_points(p, keys.stream_keys(k, keys.POINTS_SECOND), point_cfg)
        return first, second

    def ladder(v, k):
        return images.augment_views(v, keys.stream_keys(k, keys.IMAGES), image_cfg, args.image_size)

    def whole(p, v, k):
        return both_clouds(p, k), ladder(v, k)

    cases = {
        "augment_points": (jax.jit(both_clouds), (cloud, example_keys)),
        "augment_views": (jax.jit(ladder), (views, example_keys)),
        "augment_batch": (jax.jit(whole), (cloud, views, example_keys)),
    }
    config = {
        "batch": b,
        "views": m,
        "levels": list(images.view_levels(m, image_cfg)),
        "image_size": args.image_size,
        "points": args.points,
        "device": common.device_description(),
    }
    for name, (fn, inputs) in cases.items():
        start = time.perf_counter()
        jax.block_until_ready(fn(*inputs))
        compile_s = time.perf_counter() - start
        times = common.time_repeats(lambda fn=fn, inputs=inputs: jax.block_until_ready(fn(*inputs)))
        common.emit(common.row(name, config, times, objects=b, compile_s=round(compile_s, 2)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--records", default=None, help="render-stage folder (default: synthetic)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--num_objects", type=int, default=192)
    parser.add_argument("--num_shards", type=int, default=4)
    parser.add_argument("--stored_views", type=int, default=24)
    parser.add_argument("--stored_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--batches", type=int, default=4, help="batches per timed repetition")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--threads", type=int, default=2, help="reader threads per process")
    parser.add_argument("--prefetch", type=int, default=2, help="batches buffered per worker")
    parser.add_argument("--skip_augment", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        records_dir = args.records or tmp
        if args.records is None:
            _write_synthetic(records_dir, args)
        _bench_decode(records_dir, args.split, args)
        for workers in (int(w) for w in args.workers.split(",")):
            _bench_pipeline(records_dir, args.split, workers, args)
    if not args.skip_augment:
        _bench_augment(args)


if __name__ == "__main__":
    main()
