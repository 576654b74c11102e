"""Linear-SVM evaluation of frozen features (DATA_FORMATS.md B1).

The papers fit `sklearn.svm.SVC(kernel='linear', C=C)` (libsvm, one-vs-one, default tolerance)
on the raw train features and report accuracy on the whole test set. This module fits that
same classifier in one of two ways:

* `kernel="linear"`: the literal reference call; libsvm computes every dot product itself,
  one pair at a time (about 2 minutes for ModelNet40's 9,840 x 2,048 features on 2 cores).
* `kernel="gram"`: the same SVC problem handed to the same libsvm solver with the linear
  kernel precomputed as one BLAS matrix product (`kernel='precomputed'`, K = X X^T in
  float64). Same objective, same one-vs-one scheme, same solver: only the rounding of the
  kernel values differs, and about 20 times faster. It needs the n x n Gram matrix in memory
  (775 MB for ModelNet40), so `"auto"` uses it up to `GRAM_MAX_TRAIN` train examples.

`accuracy` is the papers' protocol (raw features, no scaling). `standardise=True` fits a
StandardScaler on the train features first (the variant reported beside it). C is either
given or chosen from a list on a stratified validation split carved out of train (the
papers tune C against the test set, which is not a held-out number).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from mmpoint_jax.evaluate import metrics

DEFAULT_C = 0.01
GRAM_MAX_TRAIN = 20_000  # 20k x 20k float64 = 3.2 GB
KERNELS = ("auto", "gram", "linear")


def _check_features(feats, labels, name: str) -> tuple[np.ndarray, np.ndarray]:
    feats = np.asarray(feats)
    labels = np.asarray(labels)
    if feats.ndim != 2:
        raise ValueError(f"{name}_feats must be [M, D], got shape {feats.shape}")
    if labels.shape != (feats.shape[0],):
        raise ValueError(f"{name}_labels must be [{feats.shape[0]}], got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name}_labels must be integers, got dtype {labels.dtype}")
    if not np.all(np.isfinite(feats)):
        bad = int(np.argwhere(~np.isfinite(feats))[0, 0])
        raise ValueError(f"{name}_feats row {bad} holds NaN or Inf (a diverged encoder?)")
    return feats.astype(np.float64), labels.astype(np.int64)


class LinearSVM:
    """`SVC(kernel='linear', C)` on (optionally standardised) features; see the module doc."""

    def __init__(self, C: float = DEFAULT_C, standardise: bool = False, kernel: str = "auto"):
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if not C > 0:
            raise ValueError(f"C must be > 0, got {C}")
        self.C = float(C)
        self.standardise = standardise
        self.kernel = kernel
        self._scaler = None
        self._train = None
        self._svc = None

    def fit(self, feats: np.ndarray, labels: np.ndarray, gram: np.ndarray | None = None):
        """`gram`: X X^T of `feats` when the caller already has it (C sweeps share one)."""
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        if self.standardise:
            if gram is not None:
                raise ValueError("a precomputed gram needs standardise=False (scale before)")
            self._scaler = StandardScaler().fit(feats)
            feats = self._scaler.transform(feats)
        if self.kernel == "auto":
            self.kernel = "gram" if len(feats) <= GRAM_MAX_TRAIN else "linear"
        if self.kernel == "gram":
            self._train = feats
            self._svc = SVC(kernel="precomputed", C=self.C)
            self._svc.fit(feats @ feats.T if gram is None else gram, labels)
        else:
            self._svc = SVC(kernel="linear", C=self.C).fit(feats, labels)
        return self

    def predict(self, feats: np.ndarray) -> np.ndarray:
        if self._svc is None:
            raise RuntimeError("fit the LinearSVM before predicting")
        if self._scaler is not None:
            feats = self._scaler.transform(feats)
        if self.kernel == "gram":
            feats = feats @ self._train.T  # [M_test, M_train] kernel against the train set
        return self._svc.predict(feats)


def stratified_split(
    labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), sorted; each class keeps its share in both.

    A class contributes round(n_c * val_fraction) examples to validation but always keeps at
    least one in train (a class with one example stays in train only).
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val = min(int(round(len(members) * val_fraction)), len(members) - 1)
        val.append(members[:n_val])
    val = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(len(labels)), val), val


def select_C(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    C_candidates: Sequence[float],
    standardise: bool = False,
    val_fraction: float = 0.2,
    seed: int = 0,
    kernel: str = "auto",
) -> tuple[float, list[dict]]:
    """The C of best validation accuracy (ties: the smaller C) and every C's score."""
    train_feats, train_labels = _check_features(train_feats, train_labels, "train")
    if not C_candidates:
        raise ValueError("C_candidates is empty")
    from sklearn.preprocessing import StandardScaler

    fit_idx, val_idx = stratified_split(train_labels, val_fraction, seed)
    if len(val_idx) == 0:
        raise ValueError(
            f"choosing C needs a validation split, but {len(train_labels)} train examples at "
            f"val_fraction={val_fraction} leave none (round(n_class * fraction) = 0 for every class)"
        )
    fit_feats, val_feats = train_feats[fit_idx], train_feats[val_idx]
    if standardise:  # the scaler does not depend on C: fit it once
        scaler = StandardScaler().fit(fit_feats)
        fit_feats, val_feats = scaler.transform(fit_feats), scaler.transform(val_feats)
    use_gram = kernel == "gram" or (kernel == "auto" and len(fit_idx) <= GRAM_MAX_TRAIN)
    gram = fit_feats @ fit_feats.T if use_gram else None  # shared by every C: the costly part
    scores = []
    for C in sorted(float(c) for c in C_candidates):
        model = LinearSVM(C, False, kernel).fit(fit_feats, train_labels[fit_idx], gram)
        accuracy = metrics.overall_accuracy(train_labels[val_idx], model.predict(val_feats))
        scores.append({"C": C, "val_accuracy": accuracy})
    best = max(scores, key=lambda s: s["val_accuracy"])  # max keeps the first: the smaller C
    return best["C"], scores


def linear_svm_eval(
    train_feats,
    train_labels,
    test_feats,
    test_labels,
    C: float = DEFAULT_C,
    standardise: bool = False,
    C_candidates: Sequence[float] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    kernel: str = "auto",
    num_classes: int | None = None,
) -> dict:
    """Fits on all train features, scores on all test features.

    With `C_candidates`, C is first chosen on a validation split of train (`select_C`), then
    the classifier is refit on the whole train set with it. Returns accuracy,
    mean_class_accuracy, per_class_accuracy, confusion [C, C], predictions [M_test], C,
    C_selection (None or the scores), standardise, kernel, num_train, num_test, fit_seconds.
    """
    train_feats, train_labels = _check_features(train_feats, train_labels, "train")
    test_feats, test_labels = _check_features(test_feats, test_labels, "test")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(
            f"train features are {train_feats.shape[1]}-d, test features {test_feats.shape[1]}-d"
        )
    C_selection = None
    if C_candidates is not None:
        C, C_selection = select_C(
            train_feats, train_labels, C_candidates, standardise, val_fraction, seed, kernel
        )
    start = time.perf_counter()
    model = LinearSVM(C, standardise, kernel).fit(train_feats, train_labels)
    fit_seconds = time.perf_counter() - start
    predictions = model.predict(test_feats)
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max(), predictions.max())) + 1
    report = metrics.classification_report(test_labels, predictions, num_classes)
    return {
        **report,
        "predictions": predictions,
        "C": float(C),
        "C_selection": C_selection,
        "standardise": standardise,
        "kernel": model.kernel,
        "num_train": int(len(train_labels)),
        "num_test": int(len(test_labels)),
        "fit_seconds": fit_seconds,
    }


def linear_svm_protocol(train_feats, train_labels, test_feats, test_labels, **kwargs) -> dict:
    """The papers' number (raw features) with the standardised variant beside it.

    Top-level keys are the raw-feature result (`accuracy` is the number to compare with the
    papers); `standardised` holds the same report for StandardScaler features.
    """
    kwargs.pop("standardise", None)
    raw = linear_svm_eval(train_feats, train_labels, test_feats, test_labels, **kwargs)
    scaled = linear_svm_eval(
        train_feats, train_labels, test_feats, test_labels, standardise=True, **kwargs
    )
    return {**raw, "standardised": scaled}
