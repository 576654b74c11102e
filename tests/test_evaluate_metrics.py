"""Metrics against hand-computed cases and against plain loop versions."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from mmpoint_jax.data.datasets import shapenetpart as spp
from mmpoint_jax.evaluate import metrics


def test_confusion_accuracy_and_mean_class_accuracy_by_hand():
    labels = np.array([0, 0, 1, 1, 1])
    predictions = np.array([0, 1, 1, 1, 2])
    confusion = metrics.confusion_matrix(labels, predictions, num_classes=4)
    expected = np.zeros((4, 4), int)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[1, 2] = 1, 1, 2, 1
    np.testing.assert_array_equal(confusion, expected)
    assert metrics.overall_accuracy(labels, predictions) == pytest.approx(3 / 5)
    # Classes 2 and 3 have no true example: left out, not counted as 0 (recalls 1/2 and 2/3).
    assert metrics.mean_class_accuracy(labels, predictions, 4) == pytest.approx((1 / 2 + 2 / 3) / 2)
    np.testing.assert_allclose(metrics.per_class_accuracy(confusion), [0.5, 2 / 3, np.nan, np.nan])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about the class only in predictions
        assert metrics.mean_class_accuracy(labels, predictions) == pytest.approx(
            balanced_accuracy_score(labels, predictions)
        )
    report = metrics.classification_report(labels, predictions, 4)
    assert report["accuracy"] == pytest.approx(0.6)
    assert np.isnan(metrics.mean_class_accuracy_from_confusion(np.zeros((3, 3), int)))


def test_valid_mask_drops_padding_and_ranges_are_checked():
    labels = np.array([[0, 1], [2, 2]])
    predictions = np.array([[0, 2], [2, 0]])
    valid = np.array([[True, True], [True, False]])
    confusion = metrics.confusion_matrix(labels, predictions, 3, valid=valid)
    assert confusion.sum() == 3 and confusion[2, 0] == 0 and confusion[1, 2] == 1
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        metrics.confusion_matrix(labels, predictions, 2)
    with pytest.raises(TypeError, match="integers"):
        metrics.confusion_matrix(labels.astype(float), predictions, 3)


def test_random_confusion_matches_a_loop():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 7, 500), rng.integers(0, 7, 500)
    loop = np.zeros((7, 7), int)
    for t, p in zip(labels, predictions, strict=True):
        loop[t, p] += 1
    np.testing.assert_array_equal(metrics.confusion_matrix(labels, predictions, 7), loop)
    halves = [
        metrics.confusion_matrix(labels[s], predictions[s], 7) for s in np.split(np.arange(500), 2)
    ]
    np.testing.assert_array_equal(metrics.pool_confusions(halves), loop)


TOY_PARTS = ((0, 1, 2), (3, 4))  # category 0 owns parts 0-2, category 1 owns parts 3-4


def test_shape_iou_by_hand_with_the_absent_part_rule():
    predictions = np.array([[0, 1, 1, 1], [3, 3, 0, 4]])
    truth = np.array([[0, 0, 1, 1], [3, 3, 3, 3]])
    categories = np.array([0, 1])
    ious = metrics.part_seg_shape_ious(predictions, truth, categories, TOY_PARTS)
    # Shape 0: part 0 1/2, part 1 2/3, part 2 in neither -> 1.
    # Shape 1: part 3 2/4 (a point predicted as part 0 of the other category still counts in
    # part 3's union), part 4 0/1.
    np.testing.assert_allclose(ious, [(1 / 2 + 2 / 3 + 1) / 3, (2 / 4 + 0) / 2])
    report = metrics.part_seg_report(
        np.array([0.9, 0.5, 0.7]), np.array([0, 0, 1]), category_names=["mug", "cap"]
    )
    assert report["instance_miou"] == pytest.approx(0.7)
    assert report["class_miou"] == pytest.approx((0.7 + 0.7) / 2)
    assert report["per_category_miou"] == pytest.approx({"mug": 0.7, "cap": 0.7})
    skewed = metrics.part_seg_report(np.array([1.0, 1.0, 0.1]), np.array([0, 0, 1]))
    assert skewed["instance_miou"] == pytest.approx(0.7) and skewed["class_miou"] == pytest.approx(
        0.55
    )


def loop_shape_iou(prediction, truth, parts):
    """DGCNN's calculate_shape_IoU for one shape, written out plainly."""
    ious = []
    for part in parts:
        intersection = np.sum((prediction == part) & (truth == part))
        union = np.sum((prediction == part) | (truth == part))
        ious.append(1.0 if union == 0 else intersection / union)
    return np.mean(ious)


def test_shape_ious_match_the_loop_on_shapenetpart_table():
    rng = np.random.default_rng(1)
    categories = rng.integers(0, 16, 40)
    truth = np.stack([rng.choice(spp.CATEGORY_PARTS[c], 64) for c in categories])
    predictions = np.where(rng.random((40, 64)) < 0.6, truth, rng.integers(0, 50, (40, 64)))
    fast = metrics.part_seg_shape_ious(predictions, truth, categories)
    loop = [
        loop_shape_iou(p, t, spp.CATEGORY_PARTS[c])
        for p, t, c in zip(predictions, truth, categories, strict=True)
    ]
    np.testing.assert_allclose(fast, loop)


def test_restricted_argmax_stays_inside_the_category():
    logits = np.zeros((2, 3, 5))
    logits[0, :, 4] = 10  # the best part overall belongs to category 1
    logits[0, :, 1] = 5
    logits[1, 0, 0], logits[1, 1, 3], logits[1, 2, 4] = 9, 1, 2
    predictions = metrics.restricted_argmax(logits, np.array([0, 1]), TOY_PARTS)
    np.testing.assert_array_equal(predictions, [[1, 1, 1], [3, 3, 4]])
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 10, 50))
    categories = rng.integers(0, 16, 6)
    predictions = metrics.restricted_argmax(logits, categories)
    for s, c in enumerate(categories):
        parts = np.array(spp.CATEGORY_PARTS[c])
        np.testing.assert_array_equal(predictions[s], parts[logits[s][:, parts].argmax(axis=1)])


def test_semseg_iou_by_hand_and_six_fold_pooling():
    # 3 classes; class 2 is in neither truth nor prediction of fold A.
    fold_a = metrics.confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 3)
    report = metrics.semseg_report(fold_a, ["wall", "floor", "door"])
    assert report["overall_accuracy"] == pytest.approx(3 / 4)
    assert report["iou_per_class"]["wall"] == pytest.approx(1 / 2)  # TP 1, FN 1
    assert report["iou_per_class"]["floor"] == pytest.approx(2 / 3)  # TP 2, FP 1
    assert np.isnan(report["iou_per_class"]["door"])
    assert report["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert report["mean_class_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    fold_b = metrics.confusion_matrix(np.array([2, 2, 0]), np.array([2, 0, 0]), 3)
    pooled = metrics.semseg_report(metrics.pool_confusions([fold_a, fold_b]))
    # Pooled: class 0 TP 2, FP 1, FN 1; class 1 TP 2, FP 1; class 2 TP 1, FN 1.
    np.testing.assert_allclose(list(pooled["iou_per_class"].values()), [2 / 4, 2 / 3, 1 / 2])
    assert pooled["num_points"] == 7
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.pool_confusions([fold_a, np.zeros((2, 2), int)])
