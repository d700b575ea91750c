"""The error-aware mixture of Domino (Eyuboglu et al., ICLR 2022; HazyResearch/domino
`MixtureSlicer`), written out in NumPy.

Each component k has a weight, a diagonal Gaussian over the PCA-reduced embedding, P(y = 1 | k)
and the mean predicted probability of its images. The E-step weights the label term by
`label_weight` and the prediction term by `score_weight` (Domino's gamma and gamma-hat, 10 as in
Domino's own `discover` (domino/main.py): at 1, the class default, a 128-dimensional Gaussian
drowns both terms and the components follow the embedding alone; soft predictions enter the
categorical likelihood as Domino does); the components start from the confusion-matrix cells
(Domino's "confusion" init, here in proportion to each cell's images and placed within it by
k-means: `_confusion_init` says why). The slices are the components with the largest gap
between mean prediction and mean label (Domino ranks them so).

Unlike Domino's `predict_proba` (which drops both terms), `assign` places images by their
embedding and label only, never their score: a slice tested on held-out images must not be
chosen by the errors it is tested for (`search`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class MixtureSettings:
    components: int = 25  # Domino: 25
    label_weight: float = 10.0  # Domino's gamma (its `discover` uses 10; the class default 1)
    score_weight: float = 10.0  # Domino's gamma-hat (likewise)
    max_iter: int = 100
    tol: float = 1e-3  # on the mean log-likelihood, as scikit-learn's GaussianMixture
    confusion_noise: float = 1e-3
    reg_covar: float = 1e-6  # times the mean variance of the features


@dataclass
class Mixture:
    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, d)
    var: np.ndarray  # (K, d)
    p_label: np.ndarray  # (K,) P(y = 1 | k)
    p_score: np.ndarray  # (K,) mean predicted probability
    iterations: int = 0

    @property
    def gap(self) -> np.ndarray:
        """Domino's error of a component: |mean prediction - mean label|."""
        return np.abs(self.p_score - self.p_label)

    def log_density(self, XX: np.ndarray) -> np.ndarray:
        """log N(x | k) of each row and component, (n, K), from `XX` = [X, X**2] (`_stacked`)
        in one product: the diagonal Gaussian's quadratic form is linear in x and x**2."""
        prec = 1.0 / self.var
        coef = np.concatenate([-2.0 * self.means * prec, prec], axis=1).astype(XX.dtype)
        quad = XX @ coef.T + (self.means**2 * prec).sum(1)
        d = self.means.shape[1]
        return -0.5 * (d * np.log(2 * np.pi) + np.log(self.var).sum(1) + quad)

    def weighted_log_prob(self, XX, y=None, yhat=None, s: MixtureSettings | None = None):
        s = s or MixtureSettings()
        out = self.log_density(XX) + np.log(self.weights + EPS)
        if y is not None:
            out += s.label_weight * _bernoulli(y, self.p_label)
        if yhat is not None:
            out += s.score_weight * _bernoulli(yhat, self.p_score)
        return out

    def responsibilities(self, X, y, yhat, s: MixtureSettings) -> np.ndarray:
        """P(k | x, y, prediction) of every row: the fitted mixture's own view (n, K)."""
        log_prob = self.weighted_log_prob(_stacked(np.asarray(X)), y, yhat, s)
        return np.exp(log_prob - _logsumexp(log_prob))

    def assign(self, X: np.ndarray, y: np.ndarray, block: int = 50000):
        """(component, its responsibility) of each image from its embedding and label."""
        best = np.empty(len(X), np.int64)
        resp = np.empty(len(X))
        for start in range(0, len(X), block):  # the (n, K) products a block at a time
            sl = slice(start, start + block)
            log_prob = self.weighted_log_prob(_stacked(X[sl]), y[sl], None)
            r = np.exp(log_prob - _logsumexp(log_prob))
            best[sl] = r.argmax(1)
            resp[sl] = r[np.arange(len(r)), best[sl]]
        return best, resp


def _stacked(X: np.ndarray) -> np.ndarray:
    return np.concatenate([X, X * X], axis=1)


def _logsumexp(a: np.ndarray) -> np.ndarray:
    top = a.max(1, keepdims=True)
    return top + np.log(np.exp(a - top).sum(1, keepdims=True))


def _bernoulli(v: np.ndarray, p: np.ndarray) -> np.ndarray:
    """log of a (soft) categorical over two classes: v p_k + (1 - v)(1 - p_k), (n, K)."""
    v = np.asarray(v, np.float64)[:, None]
    p = np.clip(p, 0.0, 1.0)[None, :]
    return np.log(v * p + (1 - v) * (1 - p) + EPS)


def _m_step(XX, y, yhat, resp, reg: float) -> Mixture:
    nk = resp.sum(0) + 10 * EPS
    # X'R rather than R'X: numpy's float32 product with a transposed left operand skips BLAS
    # (7x slower on 10k x 256)
    moments = (XX.T @ resp.astype(XX.dtype)).T.astype(np.float64) / nk[:, None]
    d = XX.shape[1] // 2
    means, second = moments[:, :d], moments[:, d:]
    var = np.maximum(second - means**2, 0) + reg
    return Mixture(nk / len(XX), means, var, (resp.T @ y) / nk, (resp.T @ yhat) / nk)


def _cell_components(mass: np.ndarray, k: int) -> np.ndarray:
    """How many of `k` components each confusion cell starts with: in proportion to its
    images, at least one for each cell that has any, never more than it has images."""
    out = np.where(mass > 0.5, 1, 0)
    for _ in range(k - out.sum()):  # the rest, one at a time, to the cell with most per comp
        room = mass > out
        if not room.any():
            break
        out[np.argmax(np.where(room, mass / np.maximum(out, 1), -1))] += 1
    return out


def _confusion_init(X, y, yhat, k: int, noise: float, seed: int) -> np.ndarray:
    """Domino's start: each component takes one cell of the confusion matrix (label, and the
    prediction rounded), its images weighted by how far they belong to it. Domino deals the
    cells out round robin; here each cell gets components in proportion to its images, placed
    by k-means on them: round robin puts ~k/4 identical twins on a cell of 30 images (a
    hidden stratum's misses), which EM never pulls apart, so the stratum is shared among
    twins too small to keep."""
    from sklearn.cluster import KMeans

    cells = np.stack([(1 - y) * (1 - yhat), (1 - y) * yhat, y * (1 - yhat), y * yhat], 1)
    hard = cells.argmax(1)
    counts = _cell_components(np.bincount(hard, minlength=4).astype(float), k)
    resp = np.full((len(X), int(counts.sum())), EPS)
    first = 0
    for c, kc in enumerate(counts):
        if not kc:
            continue
        own = hard == c
        label = np.zeros(int(own.sum()), np.int64)
        if kc > 1:
            # a random start: k-means++ costs more than the EM it seeds; EM refines the rest
            km = KMeans(kc, init="random", n_init=1, max_iter=10, random_state=seed)
            label = km.fit_predict(X[own])
        block = np.zeros((len(X), kc))
        block[np.flatnonzero(own), label] = 1.0
        # every image keeps its soft share of each cell, spread over that cell's components
        spread = np.bincount(label, minlength=kc) / max(1, len(label))
        resp[:, first : first + kc] += cells[:, [c]] * np.where(own[:, None], block, spread)
        first += kc
    resp += np.random.default_rng(seed).random(resp.shape) * noise
    return resp / resp.sum(1, keepdims=True)


def round_robin_init(y, yhat, k: int, noise: float, seed: int) -> np.ndarray:
    """Domino's own start, as published: the four confusion cells dealt out to the `k`
    components in turn (the baseline of `benchmarks/slices.py`)."""
    cells = np.stack([(1 - y) * (1 - yhat), (1 - y) * yhat, y * (1 - yhat), y * yhat], 1)
    resp = cells[:, np.arange(k) % 4] + EPS
    resp /= resp.sum(1, keepdims=True)
    resp += np.random.default_rng(seed).random(resp.shape) * noise
    return resp / resp.sum(1, keepdims=True)


def fit_mixture(
    X: np.ndarray,
    y: np.ndarray,
    yhat: np.ndarray,
    s: MixtureSettings,
    seed: int = 0,
    init=None,
) -> Mixture:
    """EM from the confusion start (`init`: another, e.g. `round_robin_init`) until the mean
    log-likelihood moves less than `tol`. The embedding stays in its own precision (float32
    halves the products' cost); the sums are float64."""
    XX = _stacked(np.asarray(X))
    y, yhat = np.asarray(y, np.float64), np.asarray(yhat, np.float64)
    k = max(4, min(s.components, len(X) // 2))
    reg = s.reg_covar * float(np.asarray(X, np.float64).var(0).mean() or 1.0)
    if init is None:
        resp = _confusion_init(np.asarray(X), y, yhat, k, s.confusion_noise, seed)
    else:
        resp = init(y, yhat, k, s.confusion_noise, seed)
    model, last = _m_step(XX, y, yhat, resp, reg), -np.inf
    for it in range(1, s.max_iter + 1):
        log_prob = model.weighted_log_prob(XX, y, yhat, s)
        norm = _logsumexp(log_prob)
        model = _m_step(XX, y, yhat, np.exp(log_prob - norm), reg)
        model.iterations = it
        bound = float(norm.mean())
        if abs(bound - last) < s.tol:
            break
        last = bound
    return model


def slice_components(model: Mixture, n_fit: int, n_slices: int, min_size: int) -> np.ndarray:
    """The components kept as slices: the `n_slices` with the largest error gap among those
    holding at least `min_size` of the images they were fitted on."""
    big = np.flatnonzero(model.weights * n_fit >= min_size)
    return big[np.argsort(-model.gap[big], kind="stable")][:n_slices]


def calibrated(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The score as a probability (Platt scaling: a one-feature logistic regression), which
    the mixture's prediction term needs whatever scale a classifier reports: probabilities,
    logits, or a probe's decision values. Monotone, so no ranking changes."""
    from sklearn.linear_model import LogisticRegression

    s = np.asarray(score, np.float64)
    z = (s - s.mean()) / (s.std() or 1.0)
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(z[:, None], np.asarray(y))
    return lr.predict_proba(z[:, None])[:, 1]
