"""Fine-tuning data: each task's labelled splits read into host memory, and the training stream.

`load_task_data(config)` reads the train and test splits of `config.data.format` from
`config.data.root` with the real-format loaders (`mmpoint_jax.data.datasets`) or from
render-stage records, into arrays:

  classification  modelnet40_h5 | modelnet10_h5 | scanobjectnn_h5 | records, read exactly as
                  the linear-SVM evaluation reads them (`mmpoint_jax.evaluate.splits`)
                  points [M, N, 3] float32, label [M] int32
  partseg         shapenetpart_h5 | shapenetpart_txt
                  points [M, N, 3], category [M] int32, label [M, N] global part ids
  semseg          s3dis_h5 (Area `data.test_area` held out; `data.test_root` may point at the
                  non-overlapping test blocks of DGCNN's release)
                  points [M, N, 9] float32, label [M, N] int32

Every split fits in host memory (ModelNet40 120 MB at 1,024 points, ShapeNetPart 340 MB,
S3DIS 3.5 GB): reading and batching are numpy indexing, and all augmentation runs on device.

`ArrayStream` gives endless training batches on the same global-position stream as the
pretraining pipeline (`pipeline.StreamLayout`: epoch `e` is a permutation seeded by
(seed, e), the last partial batch of an epoch is dropped, process p of P takes its contiguous
share of every global batch). A batch therefore does not depend on the number of processes, and
the iterator state is just the next step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np

from mmpoint_jax import config_lib, run_log
from mmpoint_jax.data import datasets, pipeline
from mmpoint_jax.data.datasets import s3dis, shapenetpart
from mmpoint_jax.data.datasets.common import first_points
from mmpoint_jax.evaluate import splits
from mmpoint_jax.train.finetune_config import TASKS

FORMATS = {
    "classification": splits.FORMATS,
    "partseg": ("shapenetpart_h5", "shapenetpart_txt"),
    "semseg": ("s3dis_h5",),
}
STATE_VERSION = 1


@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no truth value to compare
class TaskData:
    """The two splits of a task as arrays, and what the model and metrics need to know."""

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    class_names: tuple[str, ...]  # classes (cls, semseg) or parts (partseg)
    category_names: tuple[str, ...] = ()  # partseg: the object categories
    description: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_categories(self) -> int:
        return len(self.category_names)

    @property
    def num_channels(self) -> int:
        return int(self.train["points"].shape[-1])


def check_data_config(config: ml_collections.ConfigDict) -> None:
    config_lib.check_choice(config, "task", TASKS)
    config_lib.check_choice(config, "data.format", FORMATS[config.task])
    config_lib.check_positive(config, "data.num_points")
    if not config.data.root:
        raise config_lib.ConfigError(
            "config field 'data.root' is empty: point it at the dataset folder "
            f"(format {config.data.format})"
        )


def load_task_data(config: ml_collections.ConfigDict) -> TaskData:
    """Reads the train and test splits named by `config.data` (see the module docstring)."""
    check_data_config(config)
    loader = {"classification": _classification, "partseg": _partseg, "semseg": _semseg}
    data = loader[config.task](config.data)
    run_log.log(
        f"data: {data.description}: {len(data.train['label'])} train, "
        f"{len(data.test['label'])} test, {data.num_classes} classes"
    )
    return data


def _classification(cfg: ml_collections.ConfigDict) -> TaskData:
    """The same splits the linear-SVM evaluation reads (`evaluate/splits.py`)."""
    train = splits.load_split(cfg, cfg.train_split)
    test = splits.load_split(cfg, cfg.test_split)
    as_arrays = lambda s: {"points": s.points, "label": s.labels}  # noqa: E731
    return TaskData(
        as_arrays(train), as_arrays(test), train.class_names, description=f"{cfg.format} {cfg.root}"
    )


def _partseg(cfg: ml_collections.ConfigDict) -> TaskData:
    def read(split):
        if cfg.format == "shapenetpart_h5":
            return datasets.load_shapenetpart_h5(cfg.root, split, cfg.num_points)
        return datasets.load_shapenetpart_txt(
            cfg.root, split, cfg.num_points, seed=cfg.txt_seed, skip_bad=cfg.skip_bad_records
        )

    train, test = read(cfg.train_split), read(cfg.test_split)
    for split in (train, test):
        if split.skipped:
            run_log.log(
                f"ShapeNetPart: skipped {len(split.skipped)} bad shapes: {split.skipped[:5]}"
            )
    as_arrays = lambda s: {  # noqa: E731
        "points": s.points,
        "category": s.category,
        "label": s.part_labels,
    }
    part_names = tuple(
        f"{shapenetpart.CATEGORIES[c]}_{i}"
        for c, parts in enumerate(shapenetpart.CATEGORY_PARTS)
        for i in range(len(parts))
    )
    return TaskData(
        as_arrays(train),
        as_arrays(test),
        part_names,
        category_names=shapenetpart.CATEGORIES,
        description=f"{cfg.format} {cfg.root}",
    )


def _semseg(cfg: ml_collections.ConfigDict) -> TaskData:
    test_area = int(cfg.test_area)
    if test_area not in s3dis.AREAS:
        raise config_lib.ConfigError(
            f"config field 'data.test_area' = {test_area}; S3DIS has areas {list(s3dis.AREAS)}"
        )
    train_areas = [a for a in s3dis.AREAS if a != test_area]
    train = datasets.load_s3dis_h5(cfg.root, areas=train_areas)
    test = datasets.load_s3dis_h5(cfg.test_root or cfg.root, areas=[test_area])

    def as_arrays(blocks: datasets.SemSegSet) -> dict[str, np.ndarray]:
        where = blocks.source_files[0] if blocks.source_files else cfg.root
        return {
            "points": first_points(blocks.blocks, cfg.num_points, where),
            "label": first_points(blocks.labels, cfg.num_points, where, "label"),
        }

    return TaskData(
        as_arrays(train),
        as_arrays(test),
        train.class_names,
        description=f"S3DIS {cfg.root}, Area {test_area} held out",
    )


class ArrayStream:
    """Endless training batches of this process's share over in-memory arrays.

    Each `next()` gives the arrays' rows for this process's slots of the next global batch plus
    `index` int32 [b], the examples' global stream positions (augmentation keys derive from
    them). `get_state()` / `set_state()` save and restore the position as JSON.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        *,
        global_batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        lengths = {key: len(value) for key, value in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"training arrays differ in length: {lengths}")
        self.arrays = dict(arrays)
        self.layout = pipeline.StreamLayout.checked(
            next(iter(lengths.values())),
            global_batch_size,
            process_index,
            process_count,
            seed,
            what="the training split",
        )
        self._next_step = 0

    @property
    def steps_per_epoch(self) -> int:
        return self.layout.steps_per_epoch

    def __iter__(self) -> ArrayStream:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        step = self._next_step
        positions = [
            self.layout.position(step, slot) for slot in range(self.layout.local_batch_size)
        ]
        rows = np.array([self.layout.record_index(p) for p in positions])
        batch = {key: value[rows] for key, value in self.arrays.items()}
        batch["index"] = np.asarray(positions, np.int32)
        self._next_step += 1
        return batch

    def _stream_identity(self) -> dict[str, int]:
        """What a saved position is only meaningful for."""
        layout = self.layout
        return {
            "seed": layout.seed,
            "num_records": layout.num_records,
            "global_batch_size": layout.global_batch_size,
        }

    def get_state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "next_step": self._next_step, **self._stream_identity()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        ours = self._stream_identity()
        differ = {key: state.get(key) for key, value in ours.items() if state.get(key) != value}
        if differ:
            raise ValueError(
                f"data state saved for {differ}, this run has "
                f"{ {key: ours[key] for key in differ} }: resuming would train on another stream"
            )
        self._next_step = int(state["next_step"])
