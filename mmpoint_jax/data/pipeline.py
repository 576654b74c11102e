"""grain input pipelines over the render stage's ArrayRecord shards, and evaluation batching.

This module owns how records become host batches; it never augments (augmentation runs on the
device, `mmpoint_jax.augment`) and never imports JAX at module level (grain's worker processes
re-import it, and they only read and decode).

* `PretrainPipeline`: an endless stream of fixed-shape, raw, per-process batches for pretraining.
  The stream is defined over *global positions*: position `q` of epoch `e = q // (S*G)` is record
  `perm_e[q mod S*G]`, with `perm_e` a permutation seeded by `(seed, e)`, `G` the global batch
  size and `S = num_records // G` steps per epoch (the remainder of each epoch is dropped).
  Process `p` of `P` builds step `s` from positions `[s*G + p*b, s*G + (p+1)*b)`, `b = G/P`, so
  the processes' batches concatenated in process order are exactly the one-process batch, and
  each process reads only its own records. Every example is a pure function of its position
  (views drawn with a key of `(seed, position)`), so the stream is the same for any number of
  grain workers, and the iterator state is just the next step.
* `open_split`: the shards of a split from `manifest.json`, with each shard's record count checked
  against the manifest (a truncated ArrayRecord file reads as 0 records without any error).
* `eval_batches`: padded, masked batches over in-memory arrays, each object counted once.
* `load_labelled_points`: (points, labels, class names) of a split, for the linear SVM and
  few-shot evaluation on render-stage output (points-only or full records).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import functools
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grain
import numpy as np

from mmpoint_jax import run_log
from mmpoint_jax.data import records

MANIFEST_FILE = "manifest.json"
VIEW_SELECTIONS = ("random", "fixed")
STATE_VERSION = 1
# A bad record is replaced by the next records of the epoch's order; this many bad ones in a row
# means the data is broken rather than a few files being damaged.
MAX_CONSECUTIVE_BAD_RECORDS = 64
# Tags separating the random streams that are seeded by the same numbers.
_EPOCH_ORDER_STREAM = 0
_VIEW_CHOICE_STREAM = 1


# ----------------------------------------------------------------------------------------------
# Shards of a split


@dataclasses.dataclass(frozen=True)
class SplitShards:
    """The shards of one split, in manifest order, with their checked record counts."""

    records_dir: str
    split: str
    paths: tuple[str, ...]
    counts: tuple[int, ...]
    class_names: tuple[str, ...]

    @property
    def num_records(self) -> int:
        return sum(self.counts)

    def locate(self, record_index: int) -> tuple[str, int]:
        """Global record index -> (shard path, index inside that shard), for error messages."""
        ends = np.cumsum(self.counts)
        shard = bisect.bisect_right(ends, record_index)
        start = 0 if shard == 0 else int(ends[shard - 1])
        return self.paths[shard], record_index - start

    def describe(self, record_index: int) -> str:
        path, index = self.locate(record_index)
        return f"shard {path} record {index}"


def read_manifest(records_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(records_dir) / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: a record folder needs the manifest the render stage writes "
            "(it is the truth about how many records each shard holds)"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise records.RecordError(f"{path} is not valid JSON ({e})") from None


def count_shard_records(path: str) -> int:
    """Records an ArrayRecord file holds; a damaged footer raises RecordError naming the file."""
    from array_record.python import array_record_module

    try:
        reader = array_record_module.ArrayRecordReader(path)
        count = int(reader.num_records())
        reader.close()  # also raises on a truncated file
    except Exception as e:  # noqa: BLE001 - the reader raises bare RuntimeErrors
        raise records.RecordError(
            f"shard {path} cannot be read ({type(e).__name__}: {e})"
        ) from None
    return count


def open_split(records_dir: str | os.PathLike, split: str) -> SplitShards:
    """Shards of `split` as listed in the manifest, each checked to hold what the manifest says."""
    records_dir = Path(records_dir)
    manifest = read_manifest(records_dir)
    splits = manifest.get("splits") or {}
    if split not in splits:
        raise KeyError(
            f"{records_dir / MANIFEST_FILE} has no split '{split}' (has: {sorted(splits)})"
        )
    paths, counts = [], []
    for entry in splits[split].get("shards", []):
        path = records_dir / entry["file"]
        if not path.exists():
            raise FileNotFoundError(f"shard {path} is listed in the manifest but missing")
        expected = int(entry["num_records"])
        found = count_shard_records(str(path))
        if found != expected:
            raise records.RecordError(
                f"shard {path} holds {found} records, the manifest says {expected} "
                "(truncated or overwritten?)"
            )
        paths.append(str(path))
        counts.append(found)
    shards = SplitShards(
        records_dir=str(records_dir),
        split=split,
        paths=tuple(paths),
        counts=tuple(counts),
        class_names=tuple(manifest.get("class_names") or ()),
    )
    if shards.num_records == 0:
        raise records.RecordError(f"split '{split}' of {records_dir} holds no records")
    return shards


class _ShardReader:
    """Random access to the records of a split; reopened lazily in each grain worker."""

    def __init__(self, shards: SplitShards):
        self.shards = shards
        self._source = None

    def __getstate__(self):
        return {"shards": self.shards, "_source": None}

    @contextlib.contextmanager
    def naming(self, record_index: int):
        """Re-raises a RecordError with the shard and record index in front of it."""
        try:
            yield
        except records.RecordError as e:
            raise records.RecordError(f"{self.shards.describe(record_index)}: {e}") from None

    def read(self, record_index: int) -> bytes:
        if self._source is None:
            self._source = grain.sources.ArrayRecordDataSource(list(self.shards.paths))
        try:
            return self._source[record_index]
        except Exception as e:  # noqa: BLE001 - array_record raises bare RuntimeErrors
            raise records.RecordError(
                f"{self.shards.describe(record_index)} cannot be read ({type(e).__name__}: {e})"
            ) from None


# ----------------------------------------------------------------------------------------------
# Per-example decoding (host side: only what cannot run on the device)


def resample_points(points: np.ndarray, num_points: int) -> np.ndarray:
    """[M, 3] -> [num_points, 3], deterministically.

    More points: the first `num_points`, as the reference evaluations take them (records store
    points in random surface-sampling order, so a prefix is a uniform subset). Fewer: the cloud
    is repeated cyclically (duplicates leave max-pooled features unchanged).
    """
    count = points.shape[0]
    if count == 0:
        raise records.RecordError("record holds no points")
    if count >= num_points:
        return points[:num_points]
    return points[np.arange(num_points) % count]


def resize_views(views: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """uint8 [V, H, W, 3] -> uint8 [V, h, w, 3] (bilinear with antialiasing; no-op if equal)."""
    if tuple(views.shape[1:3]) == tuple(image_size):
        return views
    if views.shape[0] == 0:  # points-only records (num_views=0)
        return np.zeros((0, *image_size, 3), np.uint8)
    from PIL import Image

    height, width = image_size
    resized = [
        np.asarray(Image.fromarray(v).resize((width, height), Image.Resampling.BILINEAR))
        for v in views
    ]
    return np.stack(resized).astype(np.uint8)


def choose_views(
    num_stored: int, num_views: int, selection: str, seed: int, position: int
) -> np.ndarray:
    """Which `num_views` of the `num_stored` views an example shows: int32 [num_views]."""
    if num_stored < num_views:
        raise records.RecordError(f"record has {num_stored} views, {num_views} are asked for")
    if selection == "fixed":
        return np.arange(num_views, dtype=np.int32)
    rng = np.random.default_rng([seed, position, _VIEW_CHOICE_STREAM])
    return rng.choice(num_stored, size=num_views, replace=False).astype(np.int32)


@functools.lru_cache(maxsize=4)
def epoch_order(seed: int, epoch: int, num_records: int) -> np.ndarray:
    """The record order of one epoch: a permutation of [0, num_records) seeded by (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch, _EPOCH_ORDER_STREAM])
    return rng.permutation(num_records)


@dataclasses.dataclass(frozen=True)
class StreamLayout:
    """Where each process's examples sit in the global stream (see the module docstring)."""

    num_records: int
    global_batch_size: int
    process_index: int
    process_count: int
    seed: int

    @classmethod
    def checked(
        cls,
        num_records: int,
        global_batch_size: int,
        process_index: int,
        process_count: int,
        seed: int,
        what: str,
    ) -> StreamLayout:
        """A layout, or a ValueError naming `what` when the batch does not split over the
        processes or the data holds less than one global batch."""
        if global_batch_size <= 0 or global_batch_size % process_count:
            raise ValueError(
                f"global batch {global_batch_size} must be a positive multiple of the process "
                f"count {process_count}"
            )
        layout = cls(num_records, global_batch_size, process_index, process_count, int(seed))
        if layout.steps_per_epoch == 0:
            raise ValueError(
                f"{what} has {num_records} examples, fewer than one global batch of {global_batch_size}"
            )
        return layout

    @property
    def local_batch_size(self) -> int:
        return self.global_batch_size // self.process_count

    @property
    def steps_per_epoch(self) -> int:
        return self.num_records // self.global_batch_size

    def position(self, step: int, slot: int) -> int:
        """Global stream position of slot `slot` of this process's batch at `step`."""
        return step * self.global_batch_size + self.process_index * self.local_batch_size + slot

    def record_index(self, position: int, offset: int = 0) -> int:
        """The record at `position`; `offset` > 0 walks on in the epoch's order (bad records)."""
        epoch, within = divmod(position, self.steps_per_epoch * self.global_batch_size)
        order = epoch_order(self.seed, epoch, self.num_records)
        return int(order[(within + offset) % self.num_records])


class LoadPretrainExample(grain.transforms.Map):
    """Local stream counter -> one raw example (a grain map, pickled into the worker processes)."""

    def __init__(
        self,
        shards: SplitShards,
        layout: StreamLayout,
        *,
        num_views: int,
        image_size: tuple[int, int],
        num_points: int,
        view_selection: str,
        skip_bad_records: bool,
    ):
        self.reader = _ShardReader(shards)
        self.layout = layout
        self.num_views = num_views
        self.image_size = tuple(image_size)
        self.num_points = num_points
        self.view_selection = view_selection
        self.skip_bad_records = skip_bad_records
        self._reported: set[int] = set()

    def decode(self, record_index: int, position: int) -> dict[str, np.ndarray]:
        data = self.reader.read(record_index)
        with self.reader.naming(record_index):
            num_stored = records.decode(data, views=None)["num_views"]
            chosen = choose_views(
                num_stored, self.num_views, self.view_selection, self.layout.seed, position
            )
            record = records.decode(data, views=chosen)
            points = resample_points(record["points"], self.num_points)
        return {
            "points": points.astype(np.float32),  # [N, 3]
            "views": resize_views(record["views"], self.image_size),  # [m, H, W, 3]
            "label": np.int32(record["label"]),
            "view_indices": chosen,  # [m]
        }

    def map(self, counter: int) -> dict[str, np.ndarray]:
        step, slot = divmod(int(counter), self.layout.local_batch_size)
        position = self.layout.position(step, slot)
        for skipped in range(MAX_CONSECUTIVE_BAD_RECORDS):
            record_index = self.layout.record_index(position, offset=skipped)
            try:
                example = self.decode(record_index, position)
            except records.RecordError as e:
                if not self.skip_bad_records:
                    raise
                if record_index not in self._reported:  # once per worker, not once per epoch
                    self._reported.add(record_index)
                    run_log.log(f"skipping bad record: {e}")
                continue
            example["index"] = np.int64(position)
            example["skipped"] = np.int32(skipped)
            return example
        raise records.RecordError(
            f"{MAX_CONSECUTIVE_BAD_RECORDS} bad records in a row from position {position} "
            f"of split '{self.reader.shards.split}' in {self.reader.shards.records_dir}"
        )


# ----------------------------------------------------------------------------------------------
# Pretraining pipeline


def _process_share(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax  # only the main process asks JAX; workers get the numbers pickled

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
    return int(process_index), int(process_count)


def _allow_unparsed_absl_flags() -> None:
    """grain's worker processes read absl flags; outside an absl app (tests, benchmarks,
    notebooks) nothing parsed them, so take their defaults instead of failing."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class PretrainPipeline:
    """Endless raw pretraining batches of this process's share of each global batch.

    Each `next()` gives numpy arrays of the per-process batch size b = global_batch_size /
    process_count: `points` float32 [b, N, 3] (un-augmented), `views` uint8 [b, m, H, W, 3],
    `label` int32 [b], `index` int64 [b] (global stream position: the augmentation key of the
    example is derived from it), `view_indices` int32 [b, m] (stored views shown).
    Bad records raise RecordError naming shard and record; with `skip_bad_records` they are
    replaced by the next records of the epoch's order and counted in `skipped_records`.
    `get_state()` / `set_state()` save and restore the position (JSON-able); a state restores
    under any process count and worker count, but not under another seed, dataset or batch size.
    """

    def __init__(
        self,
        records_dir: str | os.PathLike,
        split: str,
        *,
        global_batch_size: int,
        num_views: int,
        image_size: int | tuple[int, int],
        num_points: int,
        seed: int,
        view_selection: str = "random",
        num_workers: int = 0,
        process_index: int | None = None,
        process_count: int | None = None,
        skip_bad_records: bool = False,
        num_threads: int = 2,
        prefetch_batches: int = 2,
    ):
        if view_selection not in VIEW_SELECTIONS:
            raise ValueError(
                f"view_selection {view_selection!r}; expected one of {VIEW_SELECTIONS}"
            )
        if num_views < 0 or num_points <= 0 or num_workers < 0:
            raise ValueError(
                f"need num_views >= 0, num_points > 0, num_workers >= 0; got "
                f"{num_views}, {num_points}, {num_workers}"
            )
        process_index, process_count = _process_share(process_index, process_count)
        self.shards = open_split(records_dir, split)
        self.layout = StreamLayout.checked(
            self.shards.num_records,
            global_batch_size,
            process_index,
            process_count,
            seed,
            what=f"split '{split}' of {records_dir}",
        )
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self._load = LoadPretrainExample(
            self.shards,
            self.layout,
            num_views=num_views,
            image_size=size,
            num_points=num_points,
            view_selection=view_selection,
            skip_bad_records=skip_bad_records,
        )
        self.num_workers = num_workers
        self._read_options = grain.ReadOptions(
            num_threads=num_threads, prefetch_buffer_size=max(prefetch_batches, num_threads)
        )
        self._prefetch_batches = prefetch_batches
        self._next_step = 0
        self._iterator = None
        self.skipped_records = 0

    @property
    def num_records(self) -> int:
        return self.layout.num_records

    @property
    def steps_per_epoch(self) -> int:
        return self.layout.steps_per_epoch

    @property
    def local_batch_size(self) -> int:
        return self.layout.local_batch_size

    def dataset(self, start_step: int = 0) -> grain.IterDataset:
        """The grain pipeline from `start_step` on: batches are whole per-step elements, so each
        worker process builds whole batches and the round-robin merge keeps their order."""
        b = self.layout.local_batch_size
        counters = grain.MapDataset.range(start_step * b, 2**62)  # endless local example counter
        batches = counters.map(self._load).batch(b, drop_remainder=True)
        stream = batches.to_iter_dataset(self._read_options)
        if self.num_workers > 0:
            _allow_unparsed_absl_flags()
            options = grain.MultiprocessingOptions(
                num_workers=self.num_workers, per_worker_buffer_size=self._prefetch_batches
            )
            stream = stream.mp_prefetch(options)
        return stream

    def __iter__(self) -> PretrainPipeline:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._iterator is None:
            self._iterator = iter(self.dataset(self._next_step))
        batch = next(self._iterator)
        self.skipped_records += int(batch.pop("skipped").sum())
        self._next_step += 1
        return batch

    def get_state(self) -> dict[str, int]:
        return {
            "version": STATE_VERSION,
            "next_step": self._next_step,
            "seed": self.layout.seed,
            "num_records": self.layout.num_records,
            "global_batch_size": self.layout.global_batch_size,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        for key in ("seed", "num_records", "global_batch_size"):
            if int(state[key]) != getattr(self.layout, key):
                raise ValueError(
                    f"pipeline state is for {key}={state[key]}, this pipeline has "
                    f"{getattr(self.layout, key)}: it would resume a different stream"
                )
        self.close()
        self._next_step = int(state["next_step"])

    def close(self) -> None:
        """Stops the worker processes (they also stop when the pipeline is garbage collected)."""
        iterator, self._iterator = self._iterator, None
        if iterator is not None and hasattr(iterator, "close"):
            iterator.close()

    def __enter__(self) -> PretrainPipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------
# Evaluation


def eval_batches(
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of `batch_size` rows with `mask` bool [batch_size]; the last one padded.

    Every object is yielded exactly once with mask True; padding rows repeat the last real row
    (valid values: no zero-norm clouds that could make NaNs) with mask False. With several
    processes, `batch_size` is the per-process size and process p takes rows
    [s*G + p*b, s*G + (p+1)*b) of step s (G = b * process_count), so every process runs the same
    number of steps and the masked global batches cover each object once.
    """
    if not arrays:
        raise ValueError("eval_batches needs at least one array")
    if "mask" in arrays:
        raise ValueError("eval_batches adds 'mask' itself; the arrays must not hold one")
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"eval arrays differ in length: {lengths}")
    if batch_size <= 0 or not 0 <= process_index < process_count:
        raise ValueError(
            f"bad batch_size {batch_size} or process {process_index} of {process_count}"
        )
    total = next(iter(lengths.values()))
    global_batch = batch_size * process_count
    for start in range(0, total, global_batch):
        rows = start + process_index * batch_size + np.arange(batch_size)
        mask = rows < total
        rows = np.minimum(rows, total - 1)  # padding repeats the last row
        batch = {key: np.asarray(value)[rows] for key, value in arrays.items()}
        batch["mask"] = mask
        yield batch


def load_labelled_points(
    records_dir: str | os.PathLike,
    split: str,
    num_points: int,
    *,
    skip_bad_records: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(points float32 [M, N, 3], labels int32 [M], class_names) of a split, in manifest order.

    Views are never decoded. Clouds are brought to N points like the pretraining pipeline does
    (first N, or cyclic repetition). A bad record raises RecordError naming shard and record;
    with `skip_bad_records` it is left out and reported (the test set then shrinks: say so).
    """
    shards = open_split(records_dir, split)
    reader = _ShardReader(shards)
    points, labels, bad = [], [], []
    for record_index in run_log.progress(
        range(shards.num_records), desc=f"read {split}", unit="obj"
    ):
        try:
            data = reader.read(record_index)
            with reader.naming(record_index):
                record = records.decode(data, views=None)
                cloud = resample_points(record["points"], num_points)
        except records.RecordError:
            if not skip_bad_records:
                raise
            bad.append(shards.describe(record_index))
            continue
        points.append(cloud)
        labels.append(record["label"])
    if bad:
        run_log.log(f"load_labelled_points: skipped {len(bad)} bad records of '{split}': {bad[:5]}")
    if not points:
        raise records.RecordError(f"split '{split}' of {records_dir} has no readable record")
    return (
        np.stack(points).astype(np.float32),
        np.asarray(labels, np.int32),
        list(shards.class_names),
    )
