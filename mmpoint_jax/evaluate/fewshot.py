"""Few-shot classification of frozen features, CrossPoint's protocol (DATA_FORMATS.md B2).

One episode: N classes drawn uniformly without replacement; per class K support and Q query
objects drawn without replacement and disjoint, **both from the train split**; classes
relabelled 0..N-1. A StandardScaler is fit on the support features (and applied to both), then
`SVC(kernel='linear', C=1.0)`; the score is query accuracy. Reported: mean and population std
(numpy's default) over the trials.

CrossPoint runs the encoder on each episode's clouds; in eval mode a cloud's feature does not
depend on what else is in the batch, so extracting every train feature once and indexing it
per episode gives the same numbers, far faster.

Trial t draws from `np.random.default_rng([seed, t])`: a trial's episode does not depend on
how many trials run. Classes with fewer than K + Q train objects cannot fill an episode (the
reference would crash) and are left out of the draw; the result lists them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mmpoint_jax.evaluate import metrics
from mmpoint_jax.evaluate.svm import LinearSVM

DEFAULT_SETTINGS = ((5, 10), (5, 20), (10, 10), (10, 20))  # (N-way, K-shot) of the papers
DEFAULT_QUERIES = 20
DEFAULT_TRIALS = 10
FEWSHOT_C = 1.0


@dataclasses.dataclass(frozen=True)
class Episode:
    classes: np.ndarray  # [N] original class ids; episode label i means classes[i]
    support: np.ndarray  # [N * K] row indices into the train set
    support_labels: np.ndarray  # [N * K] in 0..N-1
    query: np.ndarray  # [N * Q] row indices, disjoint from `support`
    query_labels: np.ndarray  # [N * Q]


def eligible_classes(labels: np.ndarray, k_shot: int, n_query: int) -> np.ndarray:
    """Classes with at least K + Q examples, ascending."""
    classes, counts = np.unique(np.asarray(labels), return_counts=True)
    return classes[counts >= k_shot + n_query]


def sample_episode(
    labels: np.ndarray, n_way: int, k_shot: int, n_query: int, rng: np.random.Generator
) -> Episode:
    """One N-way K-shot episode with Q queries per class (see the module doc)."""
    labels = np.asarray(labels)
    if min(n_way, k_shot, n_query) < 1:
        raise ValueError(f"n_way, k_shot, n_query must be >= 1, got {n_way}, {k_shot}, {n_query}")
    pool = eligible_classes(labels, k_shot, n_query)
    if len(pool) < n_way:
        raise ValueError(
            f"{n_way}-way {k_shot}-shot with {n_query} queries needs {n_way} classes with "
            f">= {k_shot + n_query} examples; only {len(pool)} have them"
        )
    classes = rng.choice(pool, size=n_way, replace=False)
    support, query = [], []
    for cls in classes:
        drawn = rng.choice(np.flatnonzero(labels == cls), size=k_shot + n_query, replace=False)
        support.append(drawn[:k_shot])
        query.append(drawn[k_shot:])
    episode_labels = np.arange(n_way)
    return Episode(
        classes=classes,
        support=np.concatenate(support),
        support_labels=np.repeat(episode_labels, k_shot),
        query=np.concatenate(query),
        query_labels=np.repeat(episode_labels, n_query),
    )


def episode_accuracy(feats: np.ndarray, episode: Episode, C: float = FEWSHOT_C) -> float:
    """Scaler fit on the support, linear SVC, accuracy on the queries."""
    model = LinearSVM(C, standardise=True, kernel="linear")
    model.fit(feats[episode.support], episode.support_labels)
    predictions = model.predict(feats[episode.query])
    return metrics.overall_accuracy(episode.query_labels, predictions)


def fewshot_eval(
    feats,
    labels,
    n_way: int = 5,
    k_shot: int = 10,
    n_query: int = DEFAULT_QUERIES,
    n_trials: int = DEFAULT_TRIALS,
    seed: int = 0,
    C: float = FEWSHOT_C,
) -> dict:
    """Mean and population std of query accuracy (fractions) over `n_trials` episodes.

    feats [M, D] and labels [M] are the **train** split's features.
    """
    feats = np.asarray(feats, dtype=np.float64)
    labels = np.asarray(labels)
    if feats.ndim != 2 or labels.shape != (feats.shape[0],):
        raise ValueError(f"feats must be [M, D] and labels [M]; got {feats.shape}, {labels.shape}")
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    accuracies = []
    for trial in range(n_trials):
        episode = sample_episode(
            labels, n_way, k_shot, n_query, np.random.default_rng([seed, trial])
        )
        accuracies.append(episode_accuracy(feats, episode, C))
    accuracies = np.asarray(accuracies)
    pool = eligible_classes(labels, k_shot, n_query)
    return {
        "accuracy_mean": float(accuracies.mean()),
        "accuracy_std": float(accuracies.std()),  # population std, as the reference prints
        "accuracies": accuracies,
        "n_way": n_way,
        "k_shot": k_shot,
        "n_query": n_query,
        "n_trials": n_trials,
        "seed": seed,
        "C": C,
        "classes_left_out": np.setdiff1d(np.unique(labels), pool),
    }


def setting_name(n_way: int, k_shot: int) -> str:
    return f"{n_way}way_{k_shot}shot"


def fewshot_suite(
    feats, labels, settings: Sequence[tuple[int, int]] = DEFAULT_SETTINGS, **kwargs
) -> dict[str, dict]:
    """`fewshot_eval` for each (N-way, K-shot), keyed like `5way_10shot`."""
    return {setting_name(n, k): fewshot_eval(feats, labels, n, k, **kwargs) for n, k in settings}


def format_fewshot(result: dict) -> str:
    """`5-way 10-shot: 92.50 +- 3.02 (10 trials)` in percent, as the papers print."""
    return (
        f"{result['n_way']}-way {result['k_shot']}-shot: {100 * result['accuracy_mean']:.2f} "
        f"+- {100 * result['accuracy_std']:.2f} ({result['n_trials']} trials)"
    )
