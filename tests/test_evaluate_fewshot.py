"""Few-shot episodes (CrossPoint protocol): disjoint support and query from train, seeded
trials, the scaler-then-linear-SVC classifier, population std."""

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mmpoint_jax.evaluate import fewshot


def labels_with_counts(counts):
    return np.concatenate([np.full(n, c) for c, n in enumerate(counts)])


@pytest.mark.parametrize("seed", range(5))
def test_episode_support_never_in_query(seed):
    labels = np.random.default_rng(seed).permutation(labels_with_counts([40, 35, 31, 50, 33, 60]))
    episode = fewshot.sample_episode(labels, 5, 10, 20, np.random.default_rng(seed))
    assert not set(episode.support.tolist()) & set(episode.query.tolist())
    assert len(set(episode.support.tolist())) == 50 and len(set(episode.query.tolist())) == 100
    assert len(set(episode.classes.tolist())) == 5
    # Episode label i means original class classes[i], on both sides.
    np.testing.assert_array_equal(labels[episode.support], episode.classes[episode.support_labels])
    np.testing.assert_array_equal(labels[episode.query], episode.classes[episode.query_labels])
    np.testing.assert_array_equal(np.bincount(episode.support_labels), [10] * 5)
    np.testing.assert_array_equal(np.bincount(episode.query_labels), [20] * 5)


def test_classes_too_small_for_an_episode_are_left_out():
    labels = labels_with_counts([30, 29, 30, 30])  # class 1 cannot give 10 + 20
    for seed in range(20):
        episode = fewshot.sample_episode(labels, 3, 10, 20, np.random.default_rng(seed))
        assert 1 not in episode.classes
    with pytest.raises(ValueError, match="needs 4 classes with >= 30 examples; only 3"):
        fewshot.sample_episode(labels, 4, 10, 20, np.random.default_rng(0))


def noisy_features(labels, dim=16, spread=2.0):
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(labels.max() + 1, dim))
    return centres[labels] + spread * rng.normal(size=(len(labels), dim))


def test_fewshot_eval_matches_a_plain_reimplementation_and_is_seeded():
    labels = labels_with_counts([35] * 8)
    feats = noisy_features(labels)
    result = fewshot.fewshot_eval(feats, labels, n_way=5, k_shot=5, n_query=20, n_trials=4, seed=11)
    for trial, accuracy in enumerate(result["accuracies"]):
        episode = fewshot.sample_episode(labels, 5, 5, 20, np.random.default_rng([11, trial]))
        scaler = StandardScaler().fit(feats[episode.support])
        model = SVC(kernel="linear", C=1.0)
        model.fit(scaler.transform(feats[episode.support]), episode.support_labels)
        predicted = model.predict(scaler.transform(feats[episode.query]))
        assert accuracy == pytest.approx(np.mean(predicted == episode.query_labels))
    accuracies = result["accuracies"]
    assert result["accuracy_mean"] == pytest.approx(accuracies.mean())
    assert result["accuracy_std"] == pytest.approx(
        np.sqrt(np.mean((accuracies - accuracies.mean()) ** 2))
    )
    assert 0.2 < result["accuracy_mean"] < 1.0 and result["accuracy_std"] > 0
    again = fewshot.fewshot_eval(feats, labels, n_way=5, k_shot=5, n_query=20, n_trials=2, seed=11)
    np.testing.assert_array_equal(again["accuracies"], accuracies[:2])  # trial t depends on t only
    other = fewshot.fewshot_eval(feats, labels, n_way=5, k_shot=5, n_query=20, n_trials=4, seed=12)
    assert not np.array_equal(other["accuracies"], accuracies)


def test_suite_keys_and_formatting():
    labels = labels_with_counts([32] * 10)
    feats = noisy_features(labels, spread=0.01)
    suite = fewshot.fewshot_suite(feats, labels, settings=((5, 10), (10, 10)), n_trials=2)
    assert list(suite) == ["5way_10shot", "10way_10shot"]
    assert suite["10way_10shot"]["accuracy_mean"] == 1.0  # well-separated classes
    assert (
        fewshot.format_fewshot(suite["5way_10shot"]) == "5-way 10-shot: 100.00 +- 0.00 (2 trials)"
    )
    assert suite["5way_10shot"]["classes_left_out"].size == 0
