"""Disentanglement metrics of the paper's protocol, plus clustering agreement and S(z).

- ``D(f | code)``: accuracy of a linear logistic-regression classifier predicting the ground
  truth factor ``f`` from a code's means, fit on the training codes and scored on the test
  codes. With ``eval.standardize`` (the default) codes are standardised (fit on train) so the
  solver converges; a linear model on standardised codes is the same model class, but the
  L2 penalty of scikit-learn's default solver acts on other scales, so the numbers differ.
  The ``*_raw`` scores are always on the raw codes, as the authors' reference evaluator.
- ``SAP(c) = |D(c|c) - D(c|z)|``, ``SAP(z) = |D(z|z) - D(z|c)|``.
- Every other categorical factor ``f`` (integer labels, 2 .. :data:`MAX_CLASSES` classes, e.g.
  ``identity_state``) gets ``D(f|c)``, ``D(f|z)`` and ``SAP(f)`` as ``d_<f>_c`` ... ; the
  transformation state (``transform``) keeps the paper's names ``d_z_z`` (from z), ``d_z_c``
  (from c). Inside each content class (where the states of one identity are not those of
  another) the state scores are repeated under ``within_content``.
- ``ARI(c)``: adjusted Rand index between a clustering of the test content codes into as many
  clusters as true classes (``eval.cluster_method``: spectral clustering of the neighbour graph
  by default, a Gaussian mixture as in the paper) and the true content labels.
- ``S(z)`` (Table 2 of paper 001, "z contains information other than rotation (low S(z))";
  the paper does not define it). Here: test samples are rotated by known random angles (2D:
  uniform in [-max_angle, max_angle], plus the sample's own ``angle`` factor, in degrees, where
  the data carry one; 3D: uniform on SO(3)); the pose is described by ``(cos, sin)`` of the
  angle (2D) or the 9 rotation-matrix entries (3D). ``S(z)`` is the R^2 of predicting z from the
  pose: a k-nearest-neighbour regressor (k = 10) fit on half of the rotated samples, scored
  on the other half, R^2 of all of z's dimensions together (variance-weighted). 1: z is a
  function of the rotation alone; lower: z carries something else (content, conformation,
  noise). Its companion ``R^2(pose|z)`` (``r2_pose_z``) is the other direction, the same
  regressor predicting the pose from the standardised z: does z know the rotation at all.
  Both are <= 1; ~0 (or below) means no relation. Where the samples' own poses are random and
  not recorded (subtomograms), a code of the total pose reads low on both: there S(z) says how
  much of z the applied rotation alone explains.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, r2_score
from sklearn.neighbors import KNeighborsRegressor
from sklearn.preprocessing import StandardScaler

from ..data.base import CONTENT, TRANSFORM
from .clustering import cluster_codes

PROTOCOL = {
    "d_score": "accuracy of sklearn LogisticRegression(max_iter=1000) on code means (standardised "
    "when eval.standardize; *_raw: raw codes, as the reference evaluator), fit on train codes, "
    "scored on test codes",
    "sap": "|D(own code) - D(other code)| per factor",
    "ari_c": "ARI of a clustering of the test content means into k = #true classes clusters: "
    "eval.cluster_method (spectral: k-nearest-neighbour graph of unit-norm codes; gmm: GaussianMixture, "
    "full covariance, the paper's) in eval.cluster_space",
    "within_content": "D(z|z), D(z|c), SAP(z) with train and test restricted to one true content class",
    "z_use": "mean |decode(c, z[p]) - decode(c, z)| / (that + mean |decode(c[p], z) - decode(c, z)|) "
    "over up to 256 test code means, p a random cyclic shift of them (fixed by eval.seed)",
    "s_z": "R^2 (variance-weighted) of KNeighborsRegressor(k=10) predicting z from the pose "
    "((cos, sin) of the angle in 2D, rotation-matrix entries in 3D) of test samples rotated by "
    "known random angles, fit on half, scored on the other half; r2_pose_z: the pose from z",
}

# A factor with more classes than this is an id or a measurement, not a state to classify.
MAX_CLASSES = 50


@dataclass(frozen=True)
class Score:
    """What one score means: ``words`` (what it measures), which way is ``better``, and the
    factor whose majority class is its chance level (None: no chance level)."""

    words: str
    better: str  # "higher" | "lower"
    factor: str | None = None

    def text(self) -> str:
        return f"{self.words} ({self.better} is better)"


# The one table of score meanings: run summaries (workflow) and report.html read it.
SCORES: dict[str, Score] = {
    "d_c_c": Score("D(c|c), accuracy of the content code c predicting the content class", "higher", CONTENT),
    "d_c_z": Score(
        "D(c|z), accuracy of the transformation code z predicting the content class, which z should not know",
        "lower",
        CONTENT,
    ),
    "sap_c": Score("SAP(c), separation for content, |D(c|c) - D(c|z)|", "higher"),
    "d_z_z": Score(
        "D(state|z), accuracy of z predicting the transformation state (conformation)", "higher", TRANSFORM
    ),
    "d_z_c": Score(
        "D(state|c), accuracy of c predicting the transformation state, which c should not know",
        "lower",
        TRANSFORM,
    ),
    "sap_z": Score("SAP(z), separation for the state, |D(state|z) - D(state|c)|", "higher"),
    "ari_c": Score(
        "ARI(c), agreement of a clustering of c (eval.cluster_method: spectral by default, "
        "gmm the paper's) with the content classes (adjusted Rand index: 1 perfect, 0 chance)",
        "higher",
    ),
    "s_z": Score(
        "S(z), R^2 of z predicted from the rotation of rotated test samples: 1 when z is only "
        "the rotation, lower when z holds more (as it should for conformations)",
        "lower",
    ),
    "r2_pose_z": Score(
        "R^2(pose|z), R^2 of the rotation of rotated test samples predicted from z: whether z knows the pose",
        "higher",
    ),
    "z_use": Score(
        "z use, the decoder's reliance on z: the change of decoded test samples when z is "
        "swapped between them, over that change plus the change when c is swapped (0: the "
        "decoder ignores z, so z is no transformation code whatever the D-scores say; 0.5: "
        "z matters as much as c)",
        "higher",
    ),
}
_RAW_SUFFIX = "_raw"


def score_info(key: str) -> Score | None:
    """The meaning of a score key of metrics.json, including the ``*_raw`` variants and the
    ``d_<factor>_c`` / ``d_<factor>_z`` / ``sap_<factor>`` scores of other factors."""
    if key in SCORES:
        return SCORES[key]
    if key.endswith(_RAW_SUFFIX):
        base = score_info(key[: -len(_RAW_SUFFIX)])
        if base is None:
            return None
        return Score(
            f"{base.words}, on raw (not standardised) codes as the reference evaluator",
            base.better,
            base.factor,
        )
    for code, better in (("c", "lower"), ("z", "higher")):
        if key.startswith("d_") and key.endswith(f"_{code}"):
            factor = key[2 : -len(code) - 1]
            return Score(f"D({factor}|{code}), accuracy of {code} predicting {factor}", better, factor)
    if key.startswith("sap_"):
        factor = key[4:]
        return Score(f"SAP({factor}), |D({factor}|z) - D({factor}|c)|", "higher")
    return None


def subsample(n: int, cap: int | None, seed: int) -> np.ndarray:
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
    standardize: bool = True,
    classifier: Any = None,
) -> float:
    """Test accuracy of a logistic regression predicting ``y`` from codes ``x``.

    ``(N, d), (N,), (M, d), (M,) -> float``. ``max_fit_samples`` caps the training rows
    (a random subset, fixed by ``seed``) to bound the cost on large data sets; ``standardize``
    scales the codes to zero mean, unit variance (fit on the training rows) first.
    ``classifier``: an unfitted scikit-learn classifier read the same way instead (e.g. a
    nearest-neighbour vote); the D-score itself is the logistic regression.
    """
    keep = subsample(len(train_x), max_fit_samples, seed)
    x, y = np.asarray(train_x, dtype=np.float64)[keep], np.asarray(train_y)[keep]
    test = np.asarray(test_x, dtype=np.float64)
    if len(np.unique(y)) < 2:
        raise ValueError("a D-score needs at least two classes in the training labels")
    if standardize:
        scaler = StandardScaler().fit(x)
        x, test = scaler.transform(x), scaler.transform(test)
    clf = LogisticRegression(max_iter=1000) if classifier is None else classifier
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return float(clf.score(test, np.asarray(test_y)))


def cluster_ari(codes: np.ndarray, labels: np.ndarray, *, seed: int = 0, **clustering: Any) -> float:
    """ARI between a clustering of ``codes`` (k = number of true classes; ``clustering``: the
    method, space ... of :func:`~dualcontrast.evaluation.clustering.cluster_codes`) and ``labels``."""
    k = len(np.unique(labels))
    pred = cluster_codes(codes, k, seed=seed, **clustering).labels
    return float(adjusted_rand_score(labels, pred))


def state_factors(labels: dict[str, np.ndarray]) -> list[str]:
    """The categorical factors other than content, ``transform`` first: integer (or boolean)
    labels with 2 .. :data:`MAX_CLASSES` classes."""
    out = []
    for name, values in labels.items():
        values = np.asarray(values)
        if name == CONTENT or values.ndim != 1 or values.dtype.kind not in "biu":
            continue
        if 2 <= len(np.unique(values)) <= MAX_CLASSES:
            out.append(name)
    return sorted(out, key=lambda n: (n != TRANSFORM, n))


def disentanglement_metrics(
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    *,
    max_fit_samples: int | None = None,
    seed: int = 0,
    standardize: bool = True,
    raw: bool = True,
    clustering: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """All scores the available codes and labels allow (``ari_c`` by ``clustering``: the method,
    space, dims and neighbours of :func:`~dualcontrast.evaluation.clustering.cluster_codes`;
    default its defaults).

    ``train`` / ``test`` hold ``c_mu``, ``z_mu`` (either may be absent) and factor labels
    (``content``, ``transform``, other states). Returns ``{"d_c_c", "d_c_z", "sap_c", "ari_c",
    "d_z_z", "d_z_c", "sap_z", "d_<factor>_c", "d_<factor>_z", "sap_<factor>", "within_content"}``
    restricted to what can be computed, and (``raw``) the D-scores and SAPs again on raw codes
    as ``<name>_raw``.
    """
    codes = {name: (train.get(f"{name}_mu"), test.get(f"{name}_mu")) for name in ("c", "z")}

    def scores(std: bool) -> dict[str, float]:
        out: dict[str, float] = {}

        def score(code: str, factor: str) -> float | None:
            tr, te = codes[code]
            if tr is None or te is None or factor not in train or factor not in test:
                return None
            if len(np.unique(train[factor])) < 2:
                return None
            return d_score(tr, train[factor], te, test[factor], max_fit_samples=max_fit_samples,
                           seed=seed, standardize=std)  # fmt: skip

        plan = [(CONTENT, "c", "z", "c")] + [
            (f, "z", "c", "z" if f == TRANSFORM else f) for f in state_factors(train) if f in test
        ]
        for factor, own, other, tag in plan:
            d_own, d_other = score(own, factor), score(other, factor)
            if d_own is not None:
                out[f"d_{tag}_{own}"] = d_own
            if d_other is not None:
                out[f"d_{tag}_{other}"] = d_other
            if d_own is not None and d_other is not None:
                out[f"sap_{tag}"] = abs(d_own - d_other)
        return out

    out: dict[str, Any] = scores(standardize)
    if raw:
        # The headline is already on raw codes when standardisation is off: no second fit.
        out.update({f"{k}{_RAW_SUFFIX}": v for k, v in (scores(False) if standardize else dict(out)).items()})
    if codes["c"][1] is not None and CONTENT in test and len(np.unique(test[CONTENT])) >= 2:
        out["ari_c"] = cluster_ari(codes["c"][1], test[CONTENT], seed=seed, **(clustering or {}))
    if CONTENT in train and TRANSFORM in train:
        within = _within_content(train, test, max_fit_samples=max_fit_samples, seed=seed,
                                 standardize=standardize)  # fmt: skip
        if within:
            out["within_content"] = within
    return out


def _within_content(
    train: dict[str, np.ndarray], test: dict[str, np.ndarray], **kwargs: Any
) -> dict[str, dict]:
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
                scores[f"d_z_{code}"] = d_score(
                    tr[f"{code}_mu"], tr[TRANSFORM], te[f"{code}_mu"], te[TRANSFORM], **kwargs
                )
        if "d_z_z" in scores and "d_z_c" in scores:
            scores["sap_z"] = abs(scores["d_z_z"] - scores["d_z_c"])
        out[str(int(cls))] = scores
    return out


# --------------------------------------------------------------------------- S(z)


def rotation_scores(z: np.ndarray, pose: np.ndarray, *, seed: int = 0, k: int = 10) -> dict[str, float]:
    """``{"s_z": R^2(z | pose), "r2_pose_z": R^2(pose | z)}`` (see the module docstring).

    ``z``: ``(N, d)`` codes of rotated samples; ``pose``: ``(N, p)`` their rotations as
    features (:func:`pose_features`). A random half fits a k-nearest-neighbour regressor, the
    other half scores it (variance-weighted R^2 over all outputs).
    """
    z = np.asarray(z, dtype=np.float64)
    pose = np.asarray(pose, dtype=np.float64)
    n = len(z)
    if n < 2 * k:
        raise ValueError(f"S(z) needs at least {2 * k} rotated samples, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    fit, score = perm[: n // 2], perm[n // 2 :]

    def r2(x: np.ndarray, y: np.ndarray) -> float:
        reg = KNeighborsRegressor(n_neighbors=k).fit(x[fit], y[fit])
        return float(r2_score(y[score], reg.predict(x[score]), multioutput="variance_weighted"))

    scaled = StandardScaler().fit(z[fit]).transform(z)
    return {"s_z": r2(pose, z), "r2_pose_z": r2(scaled, pose)}


def pose_features(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(N, k, k)`` as features: ``(cos, sin)`` in 2D, the 9 entries in 3D."""
    rotation = np.asarray(rotation, dtype=np.float64)
    if rotation.shape[-1] == 2:
        return np.stack([rotation[:, 0, 0], rotation[:, 1, 0]], axis=1)
    return rotation.reshape(len(rotation), -1)


def rotation_probe(
    model: Any,
    data: Any,
    *,
    n: int,
    max_angle: float = 180.0,
    batch_size: int = 500,
    device: Any = "cpu",
    seed: int = 0,
) -> dict[str, float] | None:
    """S(z) and R^2(pose|z) of ``model`` on up to ``n`` samples of ``data`` (a Dataset), each
    rotated by a known random rotation (fixed by ``seed``) and encoded by ``model.embed_codes``
    (the embedding input path).

    2D: angles uniform in ``[-max_angle, max_angle]`` degrees, composed with the data's own
    ``angle`` factor (degrees) where it has one; 3D: uniform on SO(3). None for a model
    without a z code or too few samples.
    """
    import torch

    from ..geometry import random_rotation_3d, rotation_matrix_2d
    from ..models.base import evaluating
    from ..transforms.geometry import warp

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.permutation(len(data))[:n])
    if len(rows) < 20:
        return None
    gen = torch.Generator().manual_seed(seed)
    if data.spatial_dims == 2:
        applied = torch.empty(len(rows), dtype=torch.float64).uniform_(-1.0, 1.0, generator=gen)
        applied = applied * math.radians(max_angle)
        rotation = rotation_matrix_2d(applied)
        own = data.labels("angle")
        total = applied + (
            0.0 if own is None else torch.from_numpy(np.radians(np.asarray(own, np.float64)[rows]))
        )
        pose = pose_features(rotation_matrix_2d(total).numpy())
    else:
        rotation = random_rotation_3d(len(rows), dtype=torch.float64, generator=gen)
        pose = pose_features(rotation.numpy())
    device = torch.device(device)
    codes = []
    with evaluating(model), torch.no_grad():
        for start in range(0, len(rows), batch_size):
            x = torch.from_numpy(data.batch(rows[start : start + batch_size])).to(device)
            r = rotation[start : start + batch_size].to(device=device, dtype=x.dtype)
            with model.autocast():
                z = model.embed_codes(warp(x, r)).z_mu  # the input path of every reported code
            if z is None:
                return None
            codes.append(z.float().cpu().numpy())
    return rotation_scores(np.concatenate(codes), pose, seed=seed)


def decoder_z_use(
    model: Any,
    c: np.ndarray,
    z: np.ndarray,
    *,
    n: int = 256,
    batch_size: int = 500,
    device: Any = "cpu",
    seed: int = 0,
) -> dict[str, float] | None:
    """``{"z_use": ...}``: how much the decoder reads z, from the codes ``c``, ``z`` (test means).

    Each of up to ``n`` samples is decoded three times: with its own codes, with the z of
    another sample and with the c of another sample (the same pairing, a random cyclic shift).
    SAP(c) is high both when z holds the transformation and when the decoder ignores z; this
    score tells the two apart. None for a model without a decoder or with fewer than 2 samples.
    """
    import torch

    from ..models.base import evaluating

    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(c))[:n]
    if len(rows) < 2:
        return None
    other = np.roll(rows, 1)
    device = torch.device(device)
    change = {"z": 0.0, "c": 0.0}
    with evaluating(model), torch.no_grad():
        for start in range(0, len(rows), batch_size):
            own, swap = rows[start : start + batch_size], other[start : start + batch_size]
            cb, zb = (torch.from_numpy(np.asarray(a[own], np.float32)).to(device) for a in (c, z))
            cs, zs = (torch.from_numpy(np.asarray(a[swap], np.float32)).to(device) for a in (c, z))
            with model.autocast():
                base = model.decode(cb, zb)
                if base is None:
                    return None
                change["z"] += float((model.decode(cb, zs) - base).abs().float().sum())
                change["c"] += float((model.decode(cs, zb) - base).abs().float().sum())
    total = change["z"] + change["c"]
    return {"z_use": change["z"] / total if total > 0 else 0.0}


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
