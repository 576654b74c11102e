"""Linear SVM evaluation: the fast Gram path equals the literal sklearn call of the papers,
the standardised variant, the stratified split and the choice of C."""

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mmpoint_jax.evaluate import svm


def clustered_features(num, num_classes=4, dim=24, spread=1.5):
    """Non-negative (like pooled ReLU features), overlapping clusters: not every point is easy."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(num_classes, dim))
    labels = np.arange(num) % num_classes
    feats = np.abs(centres[labels] + spread * rng.normal(size=(num, dim)))
    return feats.astype(np.float32), labels


@pytest.fixture(scope="module")
def data():
    feats, labels = clustered_features(240)
    return feats[:160], labels[:160], feats[160:], labels[160:]


@pytest.mark.parametrize("C", [0.01, 1.0])
def test_gram_and_linear_kernels_equal_the_reference_call(data, C):
    train_feats, train_labels, test_feats, test_labels = data
    reference = SVC(kernel="linear", C=C).fit(train_feats, train_labels).predict(test_feats)
    for kernel in ("gram", "linear"):
        result = svm.linear_svm_eval(*data, C=C, kernel=kernel)
        np.testing.assert_array_equal(result["predictions"], reference)
        assert result["accuracy"] == pytest.approx(np.mean(reference == test_labels))
        assert result["kernel"] == kernel and result["C"] == C
    assert 0.3 < np.mean(reference == test_labels) < 1.0  # the test is not trivially separable


def test_standardised_variant_fits_the_scaler_on_train(data):
    train_feats, train_labels, test_feats, test_labels = data
    scaler = StandardScaler().fit(train_feats)
    reference = SVC(kernel="linear", C=0.01).fit(scaler.transform(train_feats), train_labels)
    expected = reference.predict(scaler.transform(test_feats))
    result = svm.linear_svm_eval(*data, C=0.01, standardise=True)
    np.testing.assert_array_equal(result["predictions"], expected)
    both = svm.linear_svm_protocol(*data, C=0.01)
    assert both["standardise"] is False and both["standardised"]["standardise"] is True
    np.testing.assert_array_equal(both["standardised"]["predictions"], expected)
    assert both["confusion"].sum() == len(test_labels) and both["confusion"].shape == (4, 4)


def test_stratified_split_is_seeded_disjoint_and_keeps_class_shares():
    labels = np.array([0] * 10 + [1] * 5 + [2])
    train, val = svm.stratified_split(labels, 0.2, seed=3)
    assert not set(train) & set(val) and len(train) + len(val) == len(labels)
    assert np.bincount(labels[val], minlength=3).tolist() == [2, 1, 0]  # singleton stays in train
    again_train, again_val = svm.stratified_split(labels, 0.2, seed=3)
    np.testing.assert_array_equal(val, again_val)
    assert any(
        not np.array_equal(val, svm.stratified_split(labels, 0.2, s)[1]) for s in range(4, 9)
    )


def test_C_is_chosen_on_validation_and_then_refit_on_all_train(data):
    train_feats, train_labels, _, _ = data
    candidates = [1e-5, 1e-2, 1.0]
    best, scores = svm.select_C(train_feats, train_labels, candidates, seed=0)
    assert [s["C"] for s in scores] == candidates
    fit, val = svm.stratified_split(train_labels, 0.2, 0)
    for score in scores:  # each score is that C fit on the fit part, scored on the val part
        model = SVC(kernel="linear", C=score["C"]).fit(train_feats[fit], train_labels[fit])
        expected = np.mean(model.predict(train_feats[val]) == train_labels[val])
        assert score["val_accuracy"] == pytest.approx(expected)
    top = max(s["val_accuracy"] for s in scores)
    assert best == min(s["C"] for s in scores if s["val_accuracy"] == top)
    result = svm.linear_svm_eval(*data, C_candidates=candidates)
    assert result["C"] == best and result["C_selection"] == scores
    assert result["num_train"] == 160  # refit on the whole train set
    _, scaled_scores = svm.select_C(train_feats, train_labels, candidates, standardise=True)
    assert len(scaled_scores) == 3


def test_bad_features_are_rejected(data):
    train_feats, train_labels, test_feats, test_labels = data
    broken = train_feats.copy()
    broken[7, 3] = np.nan
    with pytest.raises(ValueError, match="train_feats row 7 holds NaN"):
        svm.linear_svm_eval(broken, train_labels, test_feats, test_labels)
    with pytest.raises(ValueError, match="24-d, test features 23-d"):
        svm.linear_svm_eval(train_feats, train_labels, test_feats[:, :23], test_labels)
    with pytest.raises(ValueError, match="test_labels must be"):
        svm.linear_svm_eval(train_feats, train_labels, test_feats, test_labels[:5])
    with pytest.raises(ValueError, match="kernel must be one of"):
        svm.LinearSVM(kernel="rbf")
