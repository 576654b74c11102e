"""The render stage as a batch job: find objects, plan shards, render them in worker processes,
resume after interruption, and write the manifest. `run(config) -> summary` is the entry point.

Inputs (`config.input_format`, detected when "auto", in this order):
* `crosspoint`: a folder with `ShapeNet/` and `ShapeNetRendering/` (imported, not re-rendered);
* `shapenet`: `<synset>/<model_id>/models/model_normalized.obj` (v2) or `.../model.obj` (v1);
  labels from the synset folders (names from `taxonomy.json` when present); splits from
  `all.csv` (or `split_file`), else `split` / `split_fraction`;
* `modelnet`: `<class>/{train,test}/<name>.off`, which keeps its split;
* `meshes`: any tree of `.obj/.off/.ply/.stl`; the first folder level is the category
  (files at the top have none: label -1).

Output, in `config.output`:
* `<split>-NNNNN-of-MMMMM.array_record`: records (`records.py`), `objects_per_shard` per shard;
  objects go to shards in the order of a hash of their id, so every shard mixes categories;
* `manifest.json`: `schema_version`, `record_schema` {schema, version}, `config`,
  `input_format`, `class_names` and `class_folders` (index = label), `splits` {split: {num_objects,
  per_class_counts, shards: [{file, num_records, object_ids}]}}, `skipped` [{object_id, split,
  source, reason}], `views`, `image_size` (square side; 0 without views), `points`, `fingerprint`.
  A truncated shard can read as empty, so readers check record counts against the manifest.
* `.render_state/`: the plan's fingerprint and one small file per finished shard.

Determinism and resume: an object's points and cameras come from (seed, object id), so a shard's
bytes do not depend on the worker count or on which worker made it. A shard is written under a
temporary name and renamed, then its state file is written; on a re-run, shards with a state file
of the same plan are kept and the rest are redone, so a run killed at any moment and re-run
produces exactly the shards of an uninterrupted run. An output folder holding a render of another
config or input is refused unless `overwrite` is set.

Bad objects never stop the job: each is skipped with `kind: detail` (e.g. `degenerate: ...`),
listed in the manifest and counted in the summary. Workers are processes started with 'spawn'
(open3d's threads and fork do not mix), one ray-casting thread each; a worker that dies (e.g. a
crash inside a native library) is replaced, and an object that was being rendered during two
such deaths is skipped as `crash`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, NamedTuple

import ml_collections
import numpy as np

from mmpoint_jax import config_lib, io_utils, run_log
from mmpoint_jax.data import import_crosspoint, meshes, records, render, synthetic

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
STATE_DIR = ".render_state"
PLAN_FILE = "plan.json"
PREVIEW_FILE = "preview.png"
METRICS_FILE = "render_metrics.jsonl"
INPUT_FORMATS = ("auto", "crosspoint", "shapenet", "modelnet", "meshes")
MODELNET_SPLITS = ("train", "test")
HELD_OUT_SPLIT = "test"
# Config fields that change how a run goes, never what it writes (left out of the fingerprint).
RUN_ONLY_FIELDS = ("input", "output", "workers", "preview", "overwrite")
# Test hook: a worker rendering this object id dies, as a crash in native code would.
CRASH_ON_ENV = "MMPOINT_RENDER_TEST_CRASH_ON"
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class RenderError(RuntimeError):
    """The job cannot start or finish (bad paths, a foreign output folder); names the path."""


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
    object_id: str
    source: str  # relative to the input folder
    split: str
    label: int
    class_name: str


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a worker needs to turn an ObjectSpec into a record (picklable, no ConfigDict)."""

    input_root: str
    input_format: str
    seed: int
    points: int
    sampling: str
    views: int
    image_size: int
    preset: render.CameraPreset
    shading: render.Shading
    png_compress_level: int
    alpha: str
    import_image_size: int


@dataclasses.dataclass(frozen=True)
class ShardTask:
    output: str
    file: str
    objects: tuple[ObjectSpec, ...]
    fingerprint: str
    settings: Settings
    crashed: frozenset[str] = frozenset()  # object ids to skip as `crash`


# ----------------------------------------------------------------------------------------------
# Finding objects


def detect_format(root: Path) -> str:
    if import_crosspoint.is_layout(root):
        return "crosspoint"
    if next(root.glob("*/*/models/model_normalized.obj"), None) or next(
        root.glob("*/*/model.obj"), None
    ):
        return "shapenet"
    if any(next(root.glob(f"*/{split}/*.off"), None) for split in MODELNET_SPLITS):
        return "modelnet"
    return "meshes"


def _find_shapenet(root: Path) -> list[tuple[str, str, str | None, str | None]]:
    """(object_id, source, split, category) of a ShapeNetCore v2 (or v1) folder."""
    found = {}
    for pattern in ("*/*/model.obj", "*/*/models/model_normalized.obj"):  # v2 wins over v1
        for path in root.glob(pattern):
            model_dir = path.parent.parent if path.parent.name == "models" else path.parent
            synset, model_id = model_dir.parent.name, model_dir.name
            found[f"{synset}/{model_id}"] = (path.relative_to(root).as_posix(), synset)
    return [(oid, source, None, synset) for oid, (source, synset) in found.items()]


def _find_modelnet(root: Path) -> list[tuple[str, str, str | None, str | None]]:
    found = []
    for split in MODELNET_SPLITS:
        for path in root.glob(f"*/{split}/*.off"):
            category = path.parent.parent.name
            found.append(
                (f"{category}/{path.stem}", path.relative_to(root).as_posix(), split, category)
            )
    return found


def _find_meshes(root: Path) -> list[tuple[str, str, str | None, str | None]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in meshes.MESH_SUFFIXES:
                continue
            relative = (Path(dirpath) / name).relative_to(root)
            category = relative.parts[0] if len(relative.parts) > 1 else None
            found.append((relative.as_posix(), relative.as_posix(), None, category))
    return found


def _find_crosspoint(root: Path) -> list[tuple[str, str, str | None, str | None]]:
    return [(o.object_id, o.points_file, None, o.synset) for o in import_crosspoint.discover(root)]


FINDERS = {
    "crosspoint": _find_crosspoint,
    "shapenet": _find_shapenet,
    "modelnet": _find_modelnet,
    "meshes": _find_meshes,
}


def _category_names(root: Path, input_format: str, folders: Sequence[str]) -> list[str]:
    """Readable names of category folders (ShapeNet taxonomy, R2N2 synsets), else the folder."""
    if input_format == "crosspoint":
        return [import_crosspoint.synset_name(f) for f in folders]
    taxonomy = synthetic.read_taxonomy_names(root) if input_format == "shapenet" else {}
    return [taxonomy.get(f, f) for f in folders]


def _hash_unit(text: str) -> float:
    """A number in [0, 1) fixed by `text` (split assignment, shard order)."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def _split_table(config, root: Path) -> dict[tuple[str, str], str]:
    path = Path(config.split_file) if config.split_file else root / synthetic.SPLIT_TABLE
    if config.split_file and not path.is_file():
        raise RenderError(f"split_file not found: {path}")
    return synthetic.read_split_table(path) if path.is_file() else {}


class Discovery(NamedTuple):
    input_format: str
    objects: list[ObjectSpec]  # sorted by object id
    class_names: list[str]  # index = label
    class_folders: list[str]  # index = label
    excluded: dict[str, int]  # objects of categories left out by config.class_names


def discover(config) -> Discovery:
    """Finds the objects of `config.input` with their labels and splits."""
    root = Path(config.input)
    input_format = detect_format(root) if config.input_format == "auto" else config.input_format
    found = FINDERS[input_format](root)
    if not found:
        raise RenderError(f"no objects found under {root} (input_format={input_format})")
    folders = sorted({category for *_, category in found if category is not None})
    wanted = list(config.class_names) or folders
    names = _category_names(root, input_format, wanted)
    labels = {folder: i for i, folder in enumerate(wanted)}
    table = _split_table(config, root) if input_format == "shapenet" else {}
    objects, excluded = [], collections.Counter()
    for object_id, source, split, category in sorted(found):
        if category is not None and category not in labels:
            excluded[category] += 1
            continue
        if split is None:
            split = table.get(tuple(object_id.split("/", 1)), None) if table else None
        if split is None:
            held_out = _hash_unit(f"split:{object_id}") < config.split_fraction
            split = HELD_OUT_SPLIT if held_out else config.split
        label = labels[category] if category is not None else -1
        objects.append(
            ObjectSpec(object_id, source, split, label, names[label] if label >= 0 else "")
        )
    return Discovery(input_format, objects, names, wanted, dict(excluded))


# ----------------------------------------------------------------------------------------------
# Planning


def plan_shards(
    objects: Sequence[ObjectSpec], objects_per_shard: int, max_objects: int = 0
) -> dict[str, list]:
    """{split: [(shard_file, [ObjectSpec])]}: objects in hash order, cut into equal shards."""
    by_split: dict[str, list[ObjectSpec]] = collections.defaultdict(list)
    for spec in objects:
        by_split[spec.split].append(spec)
    plan = {}
    for split in sorted(by_split):
        specs = sorted(
            by_split[split], key=lambda s: (_hash_unit(f"order:{s.object_id}"), s.object_id)
        )
        specs = specs[:max_objects] if max_objects > 0 else specs  # a stable, mixed subset
        count = max(1, math.ceil(len(specs) / objects_per_shard))
        plan[split] = [
            (
                records.shard_name(split, i, count),
                specs[i * objects_per_shard : (i + 1) * objects_per_shard],
            )
            for i in range(count)
        ]
    return plan


def fingerprint(config, plan: dict[str, list]) -> str:
    """Hash of everything that decides the bytes written: config (less run-only fields) and plan."""
    settings = {k: v for k, v in run_log.config_to_dict(config).items() if k not in RUN_ONLY_FIELDS}
    shards = {
        split: [[file, [dataclasses.astuple(s) for s in specs]] for file, specs in shard_list]
        for split, shard_list in plan.items()
    }
    payload = json.dumps({"settings": settings, "plan": shards}, sort_keys=True, default=list)
    return hashlib.sha256(payload.encode()).hexdigest()


def settings_from_config(config, input_format: str) -> Settings:
    shading = render.Shading(
        albedo=tuple(config.shading.albedo),
        ambient=float(config.shading.ambient),
        diffuse=float(config.shading.diffuse),
        light_dir=tuple(config.shading.light_dir),
    )
    return Settings(
        input_root=str(Path(config.input).resolve()),
        input_format=input_format,
        seed=int(config.seed),
        points=int(config.points),
        sampling=config.sampling,
        views=int(config.views),
        image_size=int(config.image_size),
        preset=render.get_preset(config.camera_preset, float(config.fov_deg)),
        shading=shading,
        png_compress_level=int(config.png_compress_level),
        alpha=config.alpha,
        import_image_size=int(config.import_image_size),
    )


# ----------------------------------------------------------------------------------------------
# One object, one shard (run inside the workers)


def object_rng(seed: int, object_id: str, purpose: str) -> np.random.Generator:
    """The random stream of one object and purpose: independent of order and worker."""
    digest = hashlib.blake2b(f"{seed}:{purpose}:{object_id}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def build_record(spec: ObjectSpec, settings: Settings) -> bytes:
    """Record bytes of one object; raises meshes.MeshError (a skip reason) on a bad object."""
    if settings.input_format == "crosspoint":
        item = import_crosspoint.CrossPointObject(
            spec.object_id, spec.source, spec.object_id.split("/")[0]
        )
        return import_crosspoint.build_record(
            settings.input_root,
            item,
            label=spec.label,
            class_name=spec.class_name,
            num_points=settings.points,
            num_views=settings.views,
            image_size=settings.import_image_size,
            alpha=settings.alpha,
            rng=object_rng(settings.seed, spec.object_id, "points"),
            png_compress_level=settings.png_compress_level,
        )
    mesh = meshes.prepare_mesh(Path(settings.input_root) / spec.source)
    rng = object_rng(settings.seed, spec.object_id, "points")
    points, normals = meshes.sample_surface(mesh, settings.points, rng, settings.sampling)
    views: Any = ()
    intrinsics = extrinsics = None
    if settings.views > 0:
        camera_rng = object_rng(settings.seed, spec.object_id, "cameras")
        intrinsics, extrinsics = render.sample_cameras(
            settings.preset, settings.views, settings.image_size, camera_rng
        )
        images = render.render_views(
            mesh, intrinsics, extrinsics, settings.image_size, settings.shading
        )
        views = [records.encode_png(image, settings.png_compress_level) for image in images]
    return records.encode(
        object_id=spec.object_id,
        points=points,
        normals=normals,
        views=views,
        intrinsics=intrinsics,
        extrinsics=extrinsics,
        label=spec.label,
        class_name=spec.class_name,
        meta={"source": spec.source, "preset": settings.preset.name, "sampling": settings.sampling},
        png_compress_level=settings.png_compress_level,
    )


def skip_reason(error: Exception) -> str:
    if isinstance(error, meshes.MeshError):
        return str(error)
    return f"error: {type(error).__name__}: {error}"


_progress_queue = None  # set in each worker by _init_worker


def _init_worker(progress_queue) -> None:
    global _progress_queue
    _progress_queue = progress_queue


def _report(event: str, file: str, object_id: str) -> None:
    if _progress_queue is not None:
        _progress_queue.put((event, file, object_id))


def render_shard(task: ShardTask) -> dict[str, Any]:
    """Writes one shard (atomically), then its state file; returns the state."""
    written, skipped = [], []

    def generate() -> Iterator[bytes]:
        for spec in task.objects:
            _report("start", task.file, spec.object_id)
            try:
                if spec.object_id in task.crashed:
                    raise meshes.MeshError(
                        "crash", "a worker process died twice while rendering this object"
                    )
                if spec.object_id == os.environ.get(CRASH_ON_ENV):
                    os._exit(70)
                data = build_record(spec, task.settings)
            except Exception as e:  # noqa: BLE001 - any bad object is skipped and listed, never fatal
                skipped.append(
                    {
                        "object_id": spec.object_id,
                        "split": spec.split,
                        "source": spec.source,
                        "reason": skip_reason(e),
                    }
                )
            else:
                written.append(spec.object_id)
                yield data
            _report("done", task.file, spec.object_id)

    num_records = records.write_shard(Path(task.output) / task.file, generate())
    state = {
        "fingerprint": task.fingerprint,
        "file": task.file,
        "num_records": num_records,
        "object_ids": written,
        "skipped": skipped,
    }
    io_utils.atomic_write_json(Path(task.output) / STATE_DIR / f"{task.file}.json", state)
    return state


# ----------------------------------------------------------------------------------------------
# The job


def default_config(
    views: int = 24, preset: str = "r2n2", runlocal: bool = False
) -> ml_collections.ConfigDict:
    """The render config (`configs/render.py` and the procedural-records helper start from it)."""
    config = ml_collections.ConfigDict()

    config.input = ""  # a mesh folder, or a CrossPoint data/ folder (ShapeNet + ShapeNetRendering)
    config.output = ""
    config.input_format = "auto"  # auto | shapenet | modelnet | meshes | crosspoint
    config.workers = 1  # processes; 0 renders in this process (no crash isolation)
    config.seed = 0  # with the object id, seeds each object's points and cameras

    config.points = 2048
    config.sampling = "uniform"  # uniform (by area) | poisson (blue noise)
    config.views = views  # 0 writes points-only records
    config.image_size = 224
    config.camera_preset = preset  # r2n2 | sphere (see mmpoint_jax/data/render.py)
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

    if runlocal:
        config.views = min(views, 4)
        config.image_size = 64
        config.points = 512
        config.objects_per_shard = 16
        config.max_objects = 64
    return config


def check_config(config) -> None:
    config_lib.check_choice(config, "input_format", INPUT_FORMATS)
    config_lib.check_choice(config, "sampling", meshes.SAMPLING_METHODS)
    config_lib.check_choice(config, "camera_preset", sorted(render.PRESETS))
    config_lib.check_choice(config, "alpha", import_crosspoint.ALPHA_MODES)
    for field in ("points", "image_size", "objects_per_shard", "import_image_size"):
        config_lib.check_positive(config, field)
    for field in ("views", "workers", "max_objects", "preview", "seed"):
        config_lib.check_positive(config, field, allow_zero=True)
    if not 0.0 <= config.split_fraction < 1.0:
        raise config_lib.ConfigError(
            f"config field 'split_fraction' = {config.split_fraction}; must be in [0, 1)"
        )
    if not config.input:
        raise config_lib.ConfigError("config field 'input' is empty; set --config.input=DIR")
    if not config.output:
        raise config_lib.ConfigError("config field 'output' is empty; set --config.output=DIR")


def check_paths(input_dir: Path, output_dir: Path) -> None:
    """Fails before any work when the input is missing or the output cannot be written."""
    if not input_dir.is_dir():
        raise RenderError(f"input folder not found: {input_dir}")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RenderError(
            f"output folder is not writable: {output_dir} ({e.strerror or e})"
        ) from None


def _remove_outputs(output_dir: Path) -> None:
    """Deletes what a render writes (shards, manifest, state, preview), nothing else."""
    for path in output_dir.glob(f"*{records.SHARD_SUFFIX}"):
        path.unlink()
    for name in (MANIFEST, PREVIEW_FILE):
        (output_dir / name).unlink(missing_ok=True)
    state = output_dir / STATE_DIR
    if state.is_dir():
        for path in state.iterdir():
            path.unlink()


def _remove_temporaries(output_dir: Path) -> None:
    """Half-written shards of a killed run (`records.write_shard`'s `.NAME.PID.tmp`)."""
    for path in output_dir.glob(f".*{records.SHARD_SUFFIX}.*.tmp"):
        path.unlink(missing_ok=True)


def claim_output(output_dir: Path, digest: str, overwrite: bool) -> None:
    """Records the plan's fingerprint; refuses a folder that holds another plan's render."""
    plan_path = output_dir / STATE_DIR / PLAN_FILE
    if plan_path.exists():
        previous = json.loads(plan_path.read_text()).get("fingerprint")
        if previous != digest:
            if not overwrite:
                raise RenderError(
                    f"output folder {output_dir} holds a render of another config or input; "
                    "use a new folder or set --config.overwrite=True"
                )
            _remove_outputs(output_dir)
    elif any(output_dir.glob(f"*{records.SHARD_SUFFIX}")):
        if not overwrite:
            raise RenderError(
                f"output folder {output_dir} holds shards this stage did not plan; "
                "use a new folder or set --config.overwrite=True"
            )
        _remove_outputs(output_dir)
    io_utils.atomic_write_json(plan_path, {"fingerprint": digest})


def finished_state(
    output_dir: Path, file: str, digest: str, specs: Sequence[ObjectSpec]
) -> dict | None:
    """The state of a shard already complete for this plan, else None (the shard is redone)."""
    state_path = output_dir / STATE_DIR / f"{file}.json"
    if not (output_dir / file).exists() or not state_path.exists():
        return None
    try:
        state = json.loads(state_path.read_text())
    except json.JSONDecodeError:
        return None
    planned = {s.object_id for s in specs}
    seen = set(state.get("object_ids", [])) | {s["object_id"] for s in state.get("skipped", [])}
    if state.get("fingerprint") != digest or seen != planned:
        return None
    # A shard damaged after it was finished (truncated, replaced) is redone too.
    return state if count_records(output_dir / file) == state.get("num_records") else None


def count_records(path: Path) -> int | None:
    """Records in an ArrayRecord file (from its footer), None when unreadable."""
    from array_record.python import array_record_module

    try:
        reader = array_record_module.ArrayRecordReader(str(path))
        try:
            return int(reader.num_records())
        finally:
            reader.close()
    except Exception:  # noqa: BLE001 - a torn file raises from the native reader (or its close)
        return None


class _Progress:
    """Counts each object once, however often its shard is retried."""

    def __init__(self, total: int, initial: int):
        self.bar = run_log.progress(total=total, initial=initial, desc="render", unit="obj")
        self.done: set[str] = set()
        self.current: dict[str, str] = {}  # shard file -> object being rendered

    def event(self, kind: str, file: str, object_id: str) -> None:
        if kind == "start":
            self.current[file] = object_id
        else:
            self.current.pop(file, None)
            if object_id not in self.done:
                self.done.add(object_id)
                self.bar.update(1)


def _run_in_process(tasks: list[ShardTask], progress: _Progress) -> list[dict]:
    class _Direct:
        def put(self, message):
            progress.event(*message)

    _init_worker(_Direct())
    try:
        return [render_shard(task) for task in tasks]
    finally:
        _init_worker(None)


def _single_threaded_env() -> dict[str, str | None]:
    """Sets one thread for BLAS/OpenMP in children (one worker = one core); returns old values."""
    old = {name: os.environ.get(name) for name in THREAD_ENV}
    os.environ.update({name: "1" for name in THREAD_ENV})
    return old


def _restore_env(old: dict[str, str | None]) -> None:
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _run_in_pool(tasks: list[ShardTask], workers: int, progress: _Progress) -> list[dict]:
    """Runs shard tasks on `workers` spawned processes; survives workers that die."""
    context = multiprocessing.get_context("spawn")
    # SimpleQueue writes synchronously: a worker that dies right after saying which object it
    # started has still said it (a Queue's feeder thread would lose the message).
    messages = context.SimpleQueue()
    pending = {task.file: task for task in tasks}
    crash_counts: collections.Counter[str] = collections.Counter()
    states = []
    # Each death marks an object; past this many, something other than objects is failing.
    max_deaths, deaths = 2 * len(tasks) + 2, 0
    old_env = _single_threaded_env()
    try:
        while pending:
            crashed = frozenset(o for o, n in crash_counts.items() if n >= 2)
            with concurrent.futures.ProcessPoolExecutor(
                max_workers=min(workers, len(pending)),
                mp_context=context,
                initializer=_init_worker,
                initargs=(messages,),
            ) as pool:
                futures = {
                    pool.submit(render_shard, dataclasses.replace(t, crashed=crashed)): f
                    for f, t in pending.items()
                }
                try:
                    while futures:
                        done, _ = concurrent.futures.wait(
                            futures, timeout=0.2, return_when="FIRST_COMPLETED"
                        )
                        _drain(messages, progress)
                        for future in done:
                            states.append(future.result())
                            pending.pop(futures.pop(future))
                except BrokenProcessPool:
                    _drain(messages, progress)
                    suspects = set(progress.current.values())
                    if not suspects:
                        raise RenderError(
                            "a render worker died outside any object (see its error above; a "
                            "script calling run() needs an `if __name__ == '__main__':` guard)"
                        ) from None
                    deaths += 1
                    if deaths > max_deaths:
                        raise RenderError(
                            f"render workers died {deaths} times; giving up"
                        ) from None
                    crash_counts.update(suspects)
                    progress.current.clear()
                    run_log.log(
                        f"render: a worker died while rendering {sorted(suspects)}; retrying"
                    )
    finally:
        _restore_env(old_env)
    _drain(messages, progress)
    return states


def _drain(messages, progress: _Progress) -> None:
    while not messages.empty():
        progress.event(*messages.get())


def build_manifest(config, found: Discovery, plan, states, digest) -> dict:
    by_file = {s["file"]: s for s in states}
    names_by_id = {
        spec.object_id: spec.class_name
        for shards in plan.values()
        for _, specs in shards
        for spec in specs
    }
    splits, skipped = {}, []
    for split, shard_list in plan.items():
        counts: collections.Counter[str] = collections.Counter()
        shards = []
        for file, _ in shard_list:
            state = by_file[file]
            counts.update(names_by_id[o] for o in state["object_ids"])
            shards.append(
                {
                    "file": file,
                    "num_records": state["num_records"],
                    "object_ids": state["object_ids"],
                }
            )
            skipped.extend(state["skipped"])
        splits[split] = {
            "num_objects": sum(s["num_records"] for s in shards),
            "per_class_counts": dict(sorted(counts.items())),
            "shards": shards,
        }
    views = int(config.views)
    crosspoint = found.input_format == "crosspoint"
    size = int(config.import_image_size if crosspoint else config.image_size)
    return {
        "schema_version": MANIFEST_VERSION,
        "record_schema": {"schema": records.SCHEMA, "version": records.VERSION},
        "config": run_log.config_to_dict(config),
        "input_format": found.input_format,
        "class_names": list(found.class_names),
        "class_folders": list(found.class_folders),
        "excluded_categories": found.excluded,
        "splits": splits,
        "skipped": sorted(skipped, key=lambda s: s["object_id"]),
        "views": views,
        "image_size": size if views > 0 else 0,
        "points": int(config.points),
        "fingerprint": digest,
    }


def read_manifest(output_dir: str | os.PathLike) -> dict:
    path = Path(output_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no render manifest: {path}")
    return json.loads(path.read_text())


def write_preview(output_dir: Path, manifest: dict, count: int, thumb: int = 96) -> Path | None:
    """A contact sheet: one row per object (first shards first), its views side by side."""
    from PIL import Image

    rows = []
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            if len(rows) >= count or shard["num_records"] == 0:
                continue
            for data in records.read_shard(output_dir / shard["file"])[: count - len(rows)]:
                views = records.decode(data)["views"]
                if len(views):
                    tiles = [
                        np.asarray(Image.fromarray(v).resize((thumb, thumb), Image.BILINEAR))
                        for v in views
                    ]
                    rows.append(np.concatenate(tiles, axis=1))
    if not rows:
        return None
    width = max(r.shape[1] for r in rows)
    sheet = np.full((len(rows) * thumb, width, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        sheet[i * thumb : (i + 1) * thumb, : r.shape[1]] = r
    path = output_dir / PREVIEW_FILE
    io_utils.atomic_write_bytes(path, records.encode_png(sheet))
    return path


def summarise(
    manifest: dict, shards_reused: int, shards_written: int, seconds: float, output: Path
) -> dict:
    written = sum(s["num_objects"] for s in manifest["splits"].values())
    reasons = collections.Counter(s["reason"].split(":", 1)[0] for s in manifest["skipped"])
    return {
        "output": str(output),
        "written": written,
        "skipped": len(manifest["skipped"]),
        "skipped_by_reason": dict(sorted(reasons.items())),
        "splits": {k: v["num_objects"] for k, v in manifest["splits"].items()},
        "shards_written": shards_written,
        "shards_reused": shards_reused,
        "seconds": round(seconds, 3),
        "objects_per_s": round(written / seconds, 3) if seconds > 0 else None,
    }


def run(config) -> dict[str, Any]:
    """Renders (or imports) `config.input` into shards + manifest in `config.output`; resumable.

    Returns a summary: written, skipped (and by reason), objects per split, shards written and
    reused, seconds and objects/s of this call.
    """
    start = time.perf_counter()
    check_config(config)
    input_dir, output_dir = Path(config.input), Path(config.output)
    check_paths(input_dir, output_dir)
    found = discover(config)
    plan = plan_shards(found.objects, config.objects_per_shard, config.max_objects)
    digest = fingerprint(config, plan)
    claim_output(output_dir, digest, bool(config.overwrite))
    _remove_temporaries(output_dir)

    settings = settings_from_config(config, found.input_format)
    states, tasks = [], []
    for shards in plan.values():
        for file, specs in shards:
            state = finished_state(output_dir, file, digest, specs)
            if state is not None:
                states.append(state)
            else:
                tasks.append(ShardTask(str(output_dir), file, tuple(specs), digest, settings))
    total = sum(len(specs) for shards in plan.values() for _, specs in shards)
    todo = sum(len(t.objects) for t in tasks)
    run_log.log(
        f"render: {total} objects ({found.input_format}) in {len(states) + len(tasks)} shards; "
        f"{len(states)} shards already complete; {todo} objects to do with {config.workers} workers"
    )
    progress = _Progress(total=total, initial=total - todo)
    try:
        if config.workers == 0:
            states += _run_in_process(tasks, progress)
        elif tasks:
            states += _run_in_pool(tasks, int(config.workers), progress)
    finally:
        progress.bar.close()
    _remove_temporaries(output_dir)  # left by workers that died mid-shard

    manifest = build_manifest(config, found, plan, states, digest)
    io_utils.atomic_write_json(output_dir / MANIFEST, manifest)
    if config.preview > 0:
        write_preview(output_dir, manifest, int(config.preview))
    summary = summarise(
        manifest, len(states) - len(tasks), len(tasks), time.perf_counter() - start, output_dir
    )
    run_log.MetricsWriter(output_dir, METRICS_FILE).write(
        0, {k: v for k, v in summary.items() if k != "output"}
    )
    reasons = f" {summary['skipped_by_reason']}" if summary["skipped"] else ""
    run_log.log(
        f"render: wrote {summary['written']} objects, skipped {summary['skipped']}{reasons} "
        f"in {summary['seconds']} s -> {output_dir}"
    )
    return summary
