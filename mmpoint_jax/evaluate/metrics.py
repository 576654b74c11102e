"""Evaluation metrics in plain numpy: classification, part segmentation, semantic segmentation.

Conventions (DATA_FORMATS.md B3-B5):

* Accuracies are fractions in [0, 1]; reports multiply by 100 when they print percent.
* Confusion matrices are `[C, C]` int64 with rows = ground truth, columns = prediction, so the
  counts of several runs (6-fold S3DIS, batches of a sharded eval) add up.
* **Mean class accuracy** (balanced accuracy) averages the recall of the classes that occur in
  the ground truth; a class with no ground-truth example has no recall and is left out (as
  `sklearn.metrics.balanced_accuracy_score`, which DGCNN reports). When no class occurs it is NaN.
* **Part segmentation**: for a shape of category c and each part p of c, IoU_p = I/U, and 1 when
  p is in neither prediction nor truth (U = 0); shape IoU = mean over the parts of c. Predicted
  ids outside c's parts count only against the true part's union. Instance mIoU = mean shape
  IoU; class mIoU = mean over categories (present in the evaluated set) of their mean shape IoU.
* **Semantic segmentation**: IoU_c = TP / (TP + FP + FN) from counts summed over every evaluated
  point (never averaged per block or room); a class absent from both prediction and truth has
  IoU NaN and is left out of mIoU.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def _as_labels(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def confusion_matrix(
    labels, predictions, num_classes: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """Counts `[C, C]` (rows truth, columns prediction) of every position of `labels`.

    `valid` (same shape, bool) leaves out padded entries: a finite eval set is padded to the
    global batch, and each real example must count exactly once.
    """
    labels = _as_labels(labels, "labels")
    predictions = _as_labels(predictions, "predictions")
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels {labels.shape} and predictions {predictions.shape} differ in shape"
        )
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != labels.shape:
            raise ValueError(f"valid {valid.shape} must have the shape of labels {labels.shape}")
        labels, predictions = labels[valid], predictions[valid]
    labels, predictions = labels.ravel(), predictions.ravel()
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} must lie in [0, {num_classes}); got range [{values.min()}, {values.max()}]"
            )
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def pool_confusions(confusions: Iterable[np.ndarray]) -> np.ndarray:
    """The sum of confusion matrices (e.g. the six held-out areas of 6-fold S3DIS)."""
    confusions = [np.asarray(c, dtype=np.int64) for c in confusions]
    if not confusions:
        raise ValueError("no confusion matrices to pool")
    shapes = {c.shape for c in confusions}
    if len(shapes) != 1:
        raise ValueError(f"confusion matrices differ in shape: {sorted(shapes)}")
    return np.sum(confusions, axis=0)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """[C] recall per class; NaN for a class with no ground-truth example."""
    confusion = np.asarray(confusion, dtype=np.float64)
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(confusion) / support, np.nan)


def accuracy_from_confusion(confusion: np.ndarray) -> float:
    confusion = np.asarray(confusion)
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else float("nan")


def mean_class_accuracy_from_confusion(confusion: np.ndarray) -> float:
    recalls = per_class_accuracy(confusion)
    present = ~np.isnan(recalls)
    return float(recalls[present].mean()) if present.any() else float("nan")


def overall_accuracy(labels, predictions) -> float:
    labels, predictions = _as_labels(labels, "labels"), _as_labels(predictions, "predictions")
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels {labels.shape} and predictions {predictions.shape} differ in shape"
        )
    return float(np.mean(labels == predictions)) if labels.size else float("nan")


def mean_class_accuracy(labels, predictions, num_classes: int | None = None) -> float:
    """Balanced accuracy: mean recall over the classes present in `labels` (see module doc)."""
    labels, predictions = _as_labels(labels, "labels"), _as_labels(predictions, "predictions")
    if num_classes is None:
        num_classes = int(max(labels.max(initial=-1), predictions.max(initial=-1))) + 1
    return mean_class_accuracy_from_confusion(confusion_matrix(labels, predictions, num_classes))


def classification_report(labels, predictions, num_classes: int) -> dict:
    """accuracy, mean_class_accuracy, per_class_accuracy [C] and confusion [C, C]."""
    confusion = confusion_matrix(labels, predictions, num_classes)
    return {
        "accuracy": accuracy_from_confusion(confusion),
        "mean_class_accuracy": mean_class_accuracy_from_confusion(confusion),
        "per_class_accuracy": per_class_accuracy(confusion),
        "confusion": confusion,
    }


# ----------------------------------------------------------------------------- part segmentation


def _default_category_parts() -> tuple[tuple[int, ...], ...]:
    from mmpoint_jax.data.datasets.shapenetpart import CATEGORY_PARTS

    return CATEGORY_PARTS


def _part_mask(category_parts, num_parts: int | None) -> np.ndarray:
    from mmpoint_jax.data.datasets.shapenetpart import category_part_mask

    return category_part_mask(category_parts or _default_category_parts(), num_parts)


def restricted_argmax(
    logits: np.ndarray,
    categories: np.ndarray,
    category_parts: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Argmax over the parts of each shape's own category (PointNet++-style evaluators).

    logits [S, N, P], categories [S] -> part ids [S, N]. CrossPoint/DGCNN instead take the plain
    argmax over all P parts; which one a report uses must be stated beside the number.
    """
    logits = np.asarray(logits)
    categories = _as_labels(categories, "categories")
    mask = _part_mask(category_parts, logits.shape[-1])  # [num_categories, P]
    if mask.shape[1] != logits.shape[-1]:
        raise ValueError(
            f"logits have {logits.shape[-1]} parts, the category table {mask.shape[1]}"
        )
    allowed = mask[categories][:, None, :]  # [S, 1, P]
    return np.where(allowed, logits, -np.inf).argmax(axis=-1)


def part_seg_shape_ious(
    predictions,
    part_labels,
    categories,
    category_parts: Sequence[Sequence[int]] | None = None,
    num_parts: int | None = None,
) -> np.ndarray:
    """[S] shape IoU of each shape (mean over its category's parts, absent-part rule = 1).

    predictions, part_labels [S, N] global part ids; categories [S]. Counts come from bincounts
    over all shapes at once, so 2,874 test shapes take well under a second.
    """
    predictions = _as_labels(predictions, "predictions")
    part_labels = _as_labels(part_labels, "part_labels")
    categories = _as_labels(categories, "categories")
    if predictions.shape != part_labels.shape or predictions.ndim != 2:
        raise ValueError(
            f"predictions {predictions.shape} and part_labels {part_labels.shape} "
            "must both be [S, N]"
        )
    if categories.shape != (predictions.shape[0],):
        raise ValueError(f"categories {categories.shape} must be [S] = [{predictions.shape[0]}]")
    mask = _part_mask(category_parts, num_parts)  # [num_categories, P]
    num_shapes, num_p = predictions.shape[0], mask.shape[1]
    for name, values in (("predictions", predictions), ("part_labels", part_labels)):
        if values.size and (values.min() < 0 or values.max() >= num_p):
            raise ValueError(f"{name} must lie in [0, {num_p})")
    # Per (shape, part) counts from three bincounts over shape * P + part id.
    offset = np.arange(num_shapes)[:, None] * num_p  # [S, 1]
    size = num_shapes * num_p
    truth_count = np.bincount((offset + part_labels).ravel(), minlength=size)
    predicted_count = np.bincount((offset + predictions).ravel(), minlength=size)
    hits = (offset + part_labels)[predictions == part_labels]
    intersection = np.bincount(hits, minlength=size).reshape(num_shapes, num_p)  # [S, P]
    union = (truth_count + predicted_count).reshape(num_shapes, num_p) - intersection  # [S, P]
    with np.errstate(invalid="ignore", divide="ignore"):
        ious = np.where(union == 0, 1.0, intersection / np.maximum(union, 1))  # [S, P]
    own_parts = mask[categories]  # [S, P]
    return (ious * own_parts).sum(axis=1) / own_parts.sum(axis=1)


def part_seg_report(
    shape_ious: np.ndarray, categories, category_names: Sequence[str] | None = None
) -> dict:
    """instance_miou, class_miou and the mean shape IoU of each category present."""
    shape_ious = np.asarray(shape_ious, dtype=np.float64)
    categories = _as_labels(categories, "categories")
    if shape_ious.shape != categories.shape:
        raise ValueError(f"shape_ious {shape_ious.shape} and categories {categories.shape} differ")
    present = np.unique(categories)
    per_category = {int(c): float(shape_ious[categories == c].mean()) for c in present}
    named = {
        (category_names[c] if category_names is not None else str(c)): v
        for c, v in per_category.items()
    }
    return {
        "instance_miou": float(shape_ious.mean()) if shape_ious.size else float("nan"),
        "class_miou": float(np.mean(list(per_category.values()))) if per_category else float("nan"),
        "per_category_miou": named,
        "num_shapes": int(shape_ious.size),
    }


# ------------------------------------------------------------------------- semantic segmentation


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """[C] TP / (TP + FP + FN); NaN where the class is in neither prediction nor truth."""
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / union, np.nan)


def semseg_report(confusion: np.ndarray, class_names: Sequence[str] | None = None) -> dict:
    """overall_accuracy, mean_class_accuracy, miou and per-class IoU from point counts."""
    ious = iou_per_class(confusion)
    names = class_names if class_names is not None else [str(c) for c in range(len(ious))]
    present = ~np.isnan(ious)
    return {
        "overall_accuracy": accuracy_from_confusion(confusion),
        "mean_class_accuracy": mean_class_accuracy_from_confusion(confusion),
        "miou": float(ious[present].mean()) if present.any() else float("nan"),
        "iou_per_class": {name: float(v) for name, v in zip(names, ious, strict=True)},
        "num_points": int(np.asarray(confusion).sum()),
    }
