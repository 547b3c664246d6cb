"""Disentanglement metrics of the paper's protocol, plus clustering agreement.

- ``D(f | code)``: accuracy of a linear logistic-regression classifier predicting the ground
  truth factor ``f`` from a code's means, fit on the training codes and scored on the test
  codes. Codes are standardised (fit on train) so the solver converges; a linear model on
  standardised codes is the same model class.
- ``SAP(c) = |D(c|c) - D(c|z)|``, ``SAP(z) = |D(z|z) - D(z|c)|``.
- ``ARI(c)``: adjusted Rand index between a Gaussian mixture on the test content codes
  (as many components as true classes) and the true content labels.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

from ..data.base import CONTENT, TRANSFORM

PROTOCOL = {
    "d_score": "accuracy of sklearn LogisticRegression(max_iter=1000) on standardised code means, "
    "fit on train codes, scored on test codes",
    "sap": "|D(own code) - D(other code)| per factor",
    "ari_c": "ARI of GaussianMixture(k = #true classes, full covariance, seed) on test content means",
    "within_content": "D(z|z), D(z|c), SAP(z) with train and test restricted to one true content class",
}


def _subsample(n: int, cap: int | None, seed: int) -> np.ndarray:
    if cap is None or n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def d_score(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    max_fit_samples: int | None = None,
    seed: int = 0,
) -> float:
    """Test accuracy of a logistic regression predicting ``y`` from codes ``x``.

    ``(N, d), (N,), (M, d), (M,) -> float``. ``max_fit_samples`` caps the training rows
    (a random subset, fixed by ``seed``) to bound the cost on large data sets.
    """
    keep = _subsample(len(train_x), max_fit_samples, seed)
    x, y = np.asarray(train_x, dtype=np.float64)[keep], np.asarray(train_y)[keep]
    if len(np.unique(y)) < 2:
        raise ValueError("a D-score needs at least two classes in the training labels")
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(x), y)
    return float(clf.score(scaler.transform(np.asarray(test_x, dtype=np.float64)), np.asarray(test_y)))


def gmm_ari(codes: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> float:
    """ARI between a GMM clustering of ``codes`` (k = number of true classes) and ``labels``."""
    k = len(np.unique(labels))
    gmm = GaussianMixture(n_components=k, covariance_type="full", random_state=seed, reg_covar=1e-4)
    pred = gmm.fit_predict(np.asarray(codes, dtype=np.float64))
    return float(adjusted_rand_score(labels, pred))


def disentanglement_metrics(
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    *,
    max_fit_samples: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """All scores the available codes and labels allow.

    ``train`` / ``test`` hold ``c_mu``, ``z_mu`` (either may be absent) and factor labels
    (``content``, ``transform``). Returns ``{"d_c_c", "d_c_z", "sap_c", "ari_c", "d_z_z",
    "d_z_c", "sap_z"}`` restricted to what can be computed.
    """
    out: dict[str, Any] = {}
    codes = {name: (train.get(f"{name}_mu"), test.get(f"{name}_mu")) for name in ("c", "z")}

    def score(code: str, factor: str) -> float | None:
        tr, te = codes[code]
        if tr is None or te is None or factor not in train or factor not in test:
            return None
        if len(np.unique(train[factor])) < 2:
            return None
        return d_score(tr, train[factor], te, test[factor], max_fit_samples=max_fit_samples, seed=seed)

    for factor, own, other, tag in ((CONTENT, "c", "z", "c"), (TRANSFORM, "z", "c", "z")):
        d_own, d_other = score(own, factor), score(other, factor)
        if d_own is not None:
            out[f"d_{tag}_{own}"] = d_own
        if d_other is not None:
            out[f"d_{tag}_{other}"] = d_other
        if d_own is not None and d_other is not None:
            out[f"sap_{tag}"] = abs(d_own - d_other)
    if codes["c"][1] is not None and CONTENT in test and len(np.unique(test[CONTENT])) >= 2:
        out["ari_c"] = gmm_ari(codes["c"][1], test[CONTENT], seed=seed)
    if CONTENT in train and TRANSFORM in train:
        within = _within_content(train, test, max_fit_samples=max_fit_samples, seed=seed)
        if within:
            out["within_content"] = within
    return out


def _within_content(train: dict[str, np.ndarray], test: dict[str, np.ndarray], **kwargs: Any) -> dict[str, dict]:
    """D(z|z), D(z|c), SAP(z) restricted to each content class.

    Where the transformation state means something different for each identity (the
    conformations of one protein are not those of another), only these are meaningful.
    """
    out: dict[str, dict] = {}
    for cls in np.unique(train[CONTENT]):
        tr = {k: v[train[CONTENT] == cls] for k, v in train.items()}
        te = {k: v[test[CONTENT] == cls] for k, v in test.items()}
        if len(np.unique(tr[TRANSFORM])) < 2 or len(te[TRANSFORM]) == 0:
            continue
        scores = {}
        for code in ("z", "c"):
            if f"{code}_mu" in tr:
                scores[f"d_z_{code}"] = d_score(tr[f"{code}_mu"], tr[TRANSFORM], te[f"{code}_mu"], te[TRANSFORM], **kwargs)
        if "d_z_z" in scores and "d_z_c" in scores:
            scores["sap_z"] = abs(scores["d_z_z"] - scores["d_z_c"])
        out[str(int(cls))] = scores
    return out


# Below this many samples per class (in either split) a logistic-regression accuracy moves by
# several points between seeds: the score is reported but flagged.
MIN_PER_CLASS = 20


def small_samples(
    train: dict[str, np.ndarray], test: dict[str, np.ndarray], min_per_class: int = MIN_PER_CLASS
) -> dict[str, dict[str, int]]:
    """``{split/factor: {class: count}}`` for every labelled class with fewer than ``min_per_class``
    samples; empty when every score rests on enough samples."""
    out: dict[str, dict[str, int]] = {}
    for split, arrays in (("train", train), ("test", test)):
        for factor in (CONTENT, TRANSFORM):
            if factor not in arrays:
                continue
            values, counts = np.unique(arrays[factor], return_counts=True)
            few = {str(v): int(c) for v, c in zip(values, counts, strict=True) if c < min_per_class}
            if few:
                out[f"{split}/{factor}"] = few
    return out


def flat_scores(scores: dict[str, Any]) -> dict[str, float]:
    """One level of float scores: ``within_content[k][m]`` becomes ``"m@content=k"``."""
    flat: dict[str, float] = {}
    for key, value in scores.items():
        if isinstance(value, dict):
            for cls, inner in value.items():
                for name, v in inner.items():
                    flat[f"{name}@content={cls}"] = float(v)
        else:
            flat[key] = float(value)
    return flat
