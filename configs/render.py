"""The offline render stage: meshes (or CrossPoint's rendered layout) to ArrayRecord shards.

  python launch/render.py --config=configs/render.py \
      --config.input=/data/ShapeNetCore.v2 --config.output=/data/records/shapenet \
      --config.workers=16

  # procedural shapes, CPU-sized (views=4 at 64 px):
  python launch/render.py --config=configs/render.py:runlocal \
      --config.input=/tmp/shapes --config.output=/tmp/rec

  # labelled points-only evaluation set:
  python launch/render.py --config=configs/render.py:views=0 --config.input=... --config.output=...

Re-running the same command resumes: complete shards are kept, the rest are redone, and the
result is byte-identical to an uninterrupted run whatever `workers` is. On this 2-core machine a
worker renders about 110 views/s of 224x224 (see bench/render.py).
"""

import ml_collections

from mmpoint_jax import config_lib


def get_config(arg=None):
    arg = config_lib.parse_arg(arg, runlocal=False, views=24, preset="r2n2")
    config = ml_collections.ConfigDict()

    config.input = ""  # a mesh folder, or a CrossPoint data/ folder (ShapeNet + ShapeNetRendering)
    config.output = ""
    config.input_format = "auto"  # auto | shapenet | modelnet | meshes | crosspoint
    config.workers = 1  # processes; 0 renders in this process (no crash isolation)
    config.seed = 0  # with the object id, seeds each object's points and cameras

    config.points = 2048
    config.sampling = "uniform"  # uniform (by area) | poisson (blue noise)
    config.views = arg.views  # 0 writes points-only records
    config.image_size = 224
    config.camera_preset = arg.preset  # r2n2 | sphere (see mmpoint_jax/data/render.py)
    config.fov_deg = 0.0  # > 0 replaces the preset's field of view
    config.shading = ml_collections.ConfigDict()
    config.shading.albedo = (0.8, 0.8, 0.8)
    config.shading.ambient = 0.3
    config.shading.diffuse = 0.7
    config.shading.light_dir = (
        -0.4,
        -0.6,
        -1.0,
    )  # towards the light, camera frame (x right, y down)
    config.png_compress_level = 3

    config.objects_per_shard = 128
    config.split = "train"  # split of inputs that have none (ShapeNet-style and plain folders)
    config.split_fraction = 0.0  # share of those objects sent to "test" (by a hash of the id)
    config.split_file = ""  # ShapeNet all.csv; default: <input>/all.csv when present
    config.class_names = ()  # category folders, in label order; () = all folders, sorted

    config.alpha = "composite"  # CrossPoint import: composite RGBA onto white | drop alpha
    config.import_image_size = 137  # CrossPoint import: R2N2's own size keeps views unresampled

    config.max_objects = 0  # > 0 keeps that many objects per split (a stable mixed subset)
    config.preview = 0  # > 0 writes <output>/preview.png with the views of that many objects
    config.overwrite = False  # replace an output folder that holds another config's render

    if arg.runlocal:
        config.views = min(arg.views, 4)
        config.image_size = 64
        config.points = 512
        config.objects_per_shard = 16
        config.max_objects = 64
    return config
