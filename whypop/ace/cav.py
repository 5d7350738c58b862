"""Concept activation vectors: linear directions separating a concept from a random set.

Every CAV is trained as in the reference: both sets truncated to the smaller size, a
stratified train/test split (test share 0.33, seeded), a linear classifier on the
flattened activations, and the CAV is its unit normal pointing towards the concept.
The classifier is the reference's, sklearn's ``SGDClassifier(alpha=0.01,
max_iter=1000, tol=1e-3)`` (hinge loss, plain SGD with the "optimal" learning rate).

``exact``
    sklearn, one fit per pair, seeded: the reference.
``fast`` (default)
    the same SGD algorithm for all pairs at once, in the span of each pair's rows:
    with about 80 training rows in thousands of dimensions, ``w = sum_i a_i x_i``, so
    every ``w . x_i`` the algorithm needs is a row of one Gram matrix of all
    activations (computed once). The loop runs compiled (numba, installed with
    librosa; a batched numpy loop otherwise). Without shuffling it reproduces
    sklearn's coefficients exactly (tested); with shuffling it differs from sklearn
    as sklearn differs from itself with another seed. Its CAVs stay coefficients over
    the rows: TCAV's products with the gradients and the mean CAVs are small matrix
    products, and the (pairs x D) matrix of CAVs is only built when asked for.
``logistic``
    the same L2 penalty with the logistic loss, solved to convergence (batched
    Cholesky + damped Newton in the same span). Unique and seed-free, but a different
    classifier: on unnormalised activations SGD stops far from the regularised
    optimum, and the TCAV verdicts of the two can differ (``benchmarks/cav.py``).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from whypop.config import CavMode, choices

log = logging.getLogger(__name__)

MODES = choices(CavMode)
TEST_SHARE = 0.33


@dataclass(frozen=True)
class CavPair:
    """One CAV problem: row indices (into the activation matrix) of the two sets."""

    positive: np.ndarray  # the concept (ordered: first rows are kept on truncation)
    negative: np.ndarray  # the random set


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indices
    train_y: np.ndarray  # 1 = positive (concept), 0 = negative (random)
    test: np.ndarray
    test_y: np.ndarray


@dataclass
class CavFit:
    """P CAVs (unit vectors in D dimensions pointing to the positive set) and held-out accuracies.

    The fast mode keeps each CAV as coefficients over the activation rows it was fitted
    on (``cavs = coef @ basis``), so products with the CAVs never build the (P, D)
    matrix: ``project(V) = (V @ basis.T) @ coef.T``.
    """

    accuracy: np.ndarray
    intercepts: np.ndarray
    coef: np.ndarray | None = None  # (P, M) float32
    basis: np.ndarray | None = None  # (M, D) float32
    dense: np.ndarray | None = None  # (P, D) float32, when fitted in the primal (exact mode)

    def __len__(self) -> int:
        return len(self.accuracy)

    @property
    def cavs(self) -> np.ndarray:
        """The (P, D) unit CAVs (materialised: P x D floats)."""
        if self.dense is None:
            self.dense = self.combine(np.eye(len(self), dtype=np.float32))
        return self.dense

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """(n, P) dot products of (n, D) vectors with every CAV."""
        import torch

        V = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(vectors), -1))
        if self.dense is not None:
            return (V @ torch.from_numpy(self.dense).T).numpy()
        return ((V @ torch.from_numpy(self.basis).T) @ torch.from_numpy(self.coef).T).numpy()

    def combine(self, weights: np.ndarray) -> np.ndarray:
        """(Q, D) weighted sums of the CAVs for (Q, P) weights (e.g. means over experiments)."""
        import torch

        Wt = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32))
        if self.dense is not None:
            return (Wt @ torch.from_numpy(self.dense)).numpy()
        return ((Wt @ torch.from_numpy(self.coef)) @ torch.from_numpy(self.basis)).numpy()


def split_pair(pair: CavPair, seed: int, test_share: float = TEST_SHARE) -> Split:
    """Truncate both sets to the smaller size, then a stratified, seeded train/test split."""
    n = min(len(pair.positive), len(pair.negative))
    if n < 2:
        raise ValueError(f"a CAV needs at least 2 examples per set, got {n}")
    rng = np.random.default_rng(seed)
    parts = {"train": [], "train_y": [], "test": [], "test_y": []}
    for label, rows in ((1, np.asarray(pair.positive)[:n]), (0, np.asarray(pair.negative)[:n])):
        rows = rows[rng.permutation(n)]
        n_test = min(n - 1, max(1, int(round(test_share * n))))
        parts["test"].append(rows[:n_test])
        parts["train"].append(rows[n_test:])
        parts["test_y"].append(np.full(n_test, label))
        parts["train_y"].append(np.full(n - n_test, label))
    return Split(**{k: np.concatenate(v) for k, v in parts.items()})


def fit_cavs(
    X: np.ndarray,
    pairs: Sequence[CavPair],
    mode: str = "fast",
    alpha: float = 0.01,
    seed: int = 0,
    tick: Callable[[int, int], None] | None = None,
    device: str = "cpu",
) -> CavFit:
    """Fit one CAV per pair on the rows of ``X`` (M, D) float32."""
    if mode not in MODES:
        raise ValueError(f"cav mode {mode!r}: allowed are {', '.join(MODES)}")
    splits = [split_pair(p, seed + i) for i, p in enumerate(pairs)]
    if not splits:
        return CavFit(np.zeros(0), np.zeros(0), dense=np.zeros((0, X.shape[1]), np.float32))
    if mode == "exact":
        return _fit_exact(X, splits, alpha, seed, tick)
    return _fit_fast(X, splits, alpha, tick, device, "sgd" if mode == "fast" else "logistic", seed)


# -- exact: the reference's classifier, one pair at a time --------------------------------


def _fit_exact(X: np.ndarray, splits: list[Split], alpha: float, seed: int, tick) -> CavFit:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDClassifier

    cavs = np.empty((len(splits), X.shape[1]), np.float32)
    acc = np.empty(len(splits))
    icpt = np.empty(len(splits))
    for i, s in enumerate(splits):
        lm = SGDClassifier(alpha=alpha, max_iter=1000, tol=1e-3, random_state=seed + i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            lm.fit(np.asarray(X[s.train], np.float32), s.train_y)
        w = lm.coef_[0] if lm.classes_[1] == 1 else -lm.coef_[0]
        cavs[i] = w / max(np.linalg.norm(w), 1e-30)
        acc[i] = float((lm.predict(np.asarray(X[s.test], np.float32)) == s.test_y).mean())
        icpt[i] = float(lm.intercept_[0])
        if tick is not None:
            tick(i + 1, len(splits))
    return CavFit(acc, icpt, dense=cavs)


# -- fast: all pairs at once through the Gram matrix -------------------------------------


def gram(X: np.ndarray, device: str = "cpu", chunk: int = 4096) -> np.ndarray:
    """X X^T (M, M) in float64 (accumulated from float32 products, in row chunks)."""
    import torch

    Xt = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32), device=device)
    out = torch.empty((len(Xt), len(Xt)), dtype=torch.float64)
    for s in range(0, len(Xt), chunk):
        out[s : s + chunk] = (Xt[s : s + chunk] @ Xt.T).double().cpu()
    return out.numpy()


def sgd_hinge_gram(
    K: np.ndarray, train: Sequence[np.ndarray], labels: Sequence[np.ndarray], alpha: float, seed: int = 0,
    max_iter: int = 1000, tol: float = 1e-3, n_iter_no_change: int = 5, shuffle: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's ``SGDClassifier(loss="hinge", alpha, max_iter, tol)`` run for all problems at once.

    The same algorithm as sklearn's plain SGD (the "optimal" learning-rate schedule,
    L2 shrinkage before each update, unregularised intercept, stop after
    ``n_iter_no_change`` epochs without improving the epoch's mean objective by ``tol``,
    as scikit-learn 1.6+ does), in
    the span of each problem's rows: ``w = sum_i a_i x_i``, so ``w . x_i`` is a row of
    the Gram matrix. Every problem shuffles its own rows each epoch (seeded; the
    shuffles differ from sklearn's, so results differ like sklearn's with another seed).
    Returns the coefficients ``a`` (padded) and intercepts ``b``.
    """
    K = np.asarray(K, dtype=np.float64)
    P = len(train)
    idx, mask = _padded(train)
    n = idx.shape[1]
    sizes = mask.sum(1).astype(np.int64)
    y = np.zeros((P, n))
    for p, lab in enumerate(labels):
        y[p, : len(lab)] = np.where(np.asarray(lab) == 1, 1.0, -1.0)
    Kp = K[idx[:, :, None], idx[:, None, :]]  # (P, n, n)
    typw = np.sqrt(1.0 / np.sqrt(alpha))
    optimal_init = 1.0 / (typw * alpha)  # sklearn: initial eta0 = typw for the hinge loss
    kernel = _sgd_kernel()
    if kernel is not None:  # compiled: one problem after another, no per-step overhead
        a, b = kernel(Kp, y, sizes, float(alpha), float(optimal_init), int(max_iter), float(tol),
                      int(n_iter_no_change), int(seed), bool(shuffle))
        return a * mask, b
    diag = np.einsum("pii->pi", Kp)
    a = np.zeros((P, n))  # stored coefficients; the true ones are scale * a
    scale = np.ones(P)
    b = np.zeros(P)
    sqnorm = np.zeros(P)  # |w|^2, kept up to date step by step
    best = np.full(P, np.inf)
    stale = np.zeros(P, dtype=np.int64)
    rng = np.random.default_rng(seed)
    live_pos = np.arange(n)[None, :] < sizes[:, None]
    active = np.arange(P)
    for epoch in range(max_iter):
        m = len(active)
        rows = np.arange(m)
        Ka, ya, da, sz = Kp[active], y[active], diag[active], sizes[active]
        aa, sa, ba, qa = a[active], scale[active], b[active], sqnorm[active]
        # each problem's visiting order (padding sorted last)
        if shuffle:
            keys = np.where(live_pos[active], rng.random((m, n)), np.inf)
            order = np.argsort(keys, axis=1, kind="stable")
        else:
            order = np.broadcast_to(np.arange(n), (m, n))
        objective = np.zeros(m)  # sklearn: sum over the epoch of loss + alpha/2 |w|^2, before each step
        steps = int(sz.max())
        for step in range(steps):
            i = order[:, step]
            live = step < sz
            eta = 1.0 / (alpha * (optimal_init + epoch * sz + step))  # sklearn's t - 1 counts samples
            yi = ya[rows, i]
            wx = sa * np.einsum("pj,pj->p", aa, Ka[rows, :, i])
            margin = yi * (wx + ba)
            objective += live * (np.maximum(0.0, 1.0 - margin) + 0.5 * alpha * qa)
            factor = np.where(live, np.maximum(0.0, 1.0 - eta * alpha), 1.0)
            sa = sa * factor
            u = np.where(live & (margin <= 1.0), eta * yi, 0.0)
            qa = factor * factor * qa + 2 * u * factor * wx + u * u * da[rows, i]
            aa[rows, i] += u / sa
            ba = ba + u
            small = sa < 1e-9  # fold the scale in before it underflows
            if small.any():
                aa[small] *= sa[small, None]
                sa[small] = 1.0
        a[active], scale[active], b[active], sqnorm[active] = aa, sa, ba, qa
        objective /= np.maximum(sz, 1)
        worse = objective > best[active] - tol
        stale[active] = np.where(worse, stale[active] + 1, 0)
        best[active] = np.minimum(best[active], objective)
        active = active[stale[active] < n_iter_no_change]
        if not len(active):
            break
    return a * scale[:, None] * mask, b


_KERNEL: list = []


def _sgd_kernel():
    """The compiled SGD loop (numba, installed with librosa), or None to use numpy steps."""
    if _KERNEL:
        return _KERNEL[0]
    try:
        import numba
    except ImportError:  # pragma: no cover - numba comes with librosa
        _KERNEL.append(None)
        return None

    @numba.njit(cache=True)
    def kernel(Kp, y, sizes, alpha, optimal_init, max_iter, tol, n_iter_no_change, seed, shuffle):
        P, n = y.shape
        out_a = np.zeros((P, n))
        out_b = np.zeros(P)
        for p in range(P):
            m = sizes[p]
            np.random.seed(seed + p)
            a = np.zeros(m)
            scale, b, sq, best, stale, t = 1.0, 0.0, 0.0, np.inf, 0, 1
            order = np.arange(m)
            for _ in range(max_iter):
                if shuffle:
                    order = np.random.permutation(m)
                objective = 0.0
                for k in range(m):
                    i = order[k]
                    eta = 1.0 / (alpha * (optimal_init + t - 1))
                    yi = y[p, i]
                    wx = 0.0
                    for j in range(m):
                        wx += a[j] * Kp[p, j, i]
                    wx *= scale
                    margin = yi * (wx + b)
                    objective += max(0.0, 1.0 - margin) + 0.5 * alpha * sq
                    f = max(0.0, 1.0 - eta * alpha)
                    scale *= f
                    u = eta * yi if margin <= 1.0 else 0.0
                    sq = f * f * sq + 2.0 * u * f * wx + u * u * Kp[p, i, i]
                    if u != 0.0:
                        a[i] += u / scale
                        b += u
                    t += 1
                    if scale < 1e-9:
                        for j in range(m):
                            a[j] *= scale
                        scale = 1.0
                objective /= m
                if objective > best - tol:
                    stale += 1
                else:
                    stale = 0
                if objective < best:
                    best = objective
                if stale >= n_iter_no_change:
                    break
            for j in range(m):
                out_a[p, j] = a[j] * scale
            out_b[p] = b
        return out_a, out_b

    _KERNEL.append(kernel)
    return kernel


def _fit_fast(X: np.ndarray, splits: list[Split], alpha: float, tick, device: str, solver: str = "sgd",
              seed: int = 0) -> CavFit:
    import torch
    from threadpoolctl import threadpool_limits

    rows = np.unique(np.concatenate([np.concatenate([s.train, s.test]) for s in splits]))
    lookup = np.full(int(rows.max()) + 1, -1, dtype=np.int64)
    lookup[rows] = np.arange(len(rows))
    Xs = np.asarray(X if len(rows) == len(X) else X[rows], dtype=np.float32)  # only the rows any pair uses
    K = gram(Xs, device)
    train = [lookup[s.train] for s in splits]
    with threadpool_limits(1, user_api="blas"):  # many tiny systems: BLAS threads only contend
        if solver == "sgd":
            coef, b = sgd_hinge_gram(K, train, [s.train_y for s in splits], alpha, seed)
        else:
            coef, b = solve_logistic_gram(K, train, [s.train_y for s in splits], alpha)
    if tick is not None:
        tick(len(splits) // 2, len(splits))
    P, M = len(splits), len(rows)
    # held-out accuracy through the Gram matrix: f(test) = K[test, train] a + b, all pairs at once
    tr_idx, tr_mask = _padded(train)
    te_idx, te_mask = _padded([lookup[s.test] for s in splits])
    te_y = _padded([s.test_y for s in splits])[0]
    a = coef[:, : tr_idx.shape[1]] * tr_mask
    with threadpool_limits(1, user_api="blas"):
        f = np.einsum("pij,pj->pi", K[te_idx[:, :, None], tr_idx[:, None, :]], a) + b[:, None]
    acc = (((f > 0) == (te_y == 1)) * te_mask).sum(1) / te_mask.sum(1)
    C = np.zeros(P * M, dtype=np.float64)  # coefficients over the used rows (a row may repeat in a pair)
    np.add.at(C, (np.arange(P)[:, None] * M + tr_idx).ravel(), a.ravel())
    C = C.reshape(P, M)
    # CAVs stay coefficients over the rows: unit length through the Gram matrix (|w|^2 = c K c)
    C /= np.sqrt(np.maximum(((C @ K) * C).sum(1), 1e-300))[:, None]
    if tick is not None:
        tick(len(splits), len(splits))
    return CavFit(acc, b, coef=C.astype(np.float32), basis=Xs)


def _padded(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged 1-D integer arrays -> (P, n) zero-padded array and its 0/1 mask."""
    n = max(len(a) for a in arrays)
    out = np.zeros((len(arrays), n), dtype=np.int64)
    mask = np.zeros((len(arrays), n))
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
        mask[i, : len(a)] = 1
    return out, mask


def solve_logistic_gram(
    K: np.ndarray, train: Sequence[np.ndarray], labels: Sequence[np.ndarray], alpha: float,
    max_iter: int = 50, tol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray]:
    """Batched L2-regularised logistic regression given only the Gram matrix.

    Minimises ``mean(log(1 + exp(-y f))) + alpha/2 |w|^2`` with ``f = x.w + b`` for
    every problem (its rows ``train[p]`` of ``K``, labels 1/0). With ``w = X^T a`` and
    each problem's Gram block ``K_p = L L^T`` (Cholesky), ``beta = L^T a`` turns it into
    an ordinary n-dimensional logistic regression on the rows of ``L`` with
    ``|w| = |beta|``, solved by batched damped Newton steps (numpy: faster than torch
    for many tiny float64 systems on a CPU). Returns per problem the coefficients ``a``
    (padded to the longest problem) and the intercept ``b``.
    """
    K = np.asarray(K, dtype=np.float64)
    P = len(train)
    n = max(len(t) for t in train)
    idx = np.zeros((P, n), dtype=np.int64)
    mask = np.zeros((P, n))
    t = np.zeros((P, n))
    for p, (rows, y) in enumerate(zip(train, labels)):
        idx[p, : len(rows)] = rows
        mask[p, : len(rows)] = 1
        t[p, : len(rows)] = y
    Kp = K[idx[:, :, None], idx[:, None, :]] * (mask[:, :, None] * mask[:, None, :])  # (P, n, n)
    scale = np.maximum(np.einsum("pii->p", Kp) / mask.sum(1), 1e-300)  # mean squared norm
    eye = np.eye(n)
    pad = eye * (1 - mask)[:, None, :]  # identity on padded rows keeps the blocks positive definite
    L = None
    for jitter in (1e-10, 1e-8, 1e-6, 1e-4):  # near-duplicate rows make a block singular
        try:
            L = np.linalg.cholesky(Kp + pad + eye * (mask * (jitter * scale)[:, None])[:, None, :])
            break
        except np.linalg.LinAlgError:
            continue
    if L is None:
        raise FloatingPointError("CAV Gram blocks are not positive definite (activations contain NaN or inf?)")
    Z = np.concatenate([L * mask[:, :, None], mask[:, :, None]], axis=2)  # features (rows of L) + bias column
    Zt = np.ascontiguousarray(Z.transpose(0, 2, 1))
    count = mask.sum(1, keepdims=True)
    reg = np.full((P, n + 1), alpha)
    reg[:, -1] = 0.0
    ridge = np.eye(n + 1)[None] * (reg + 1e-12)[:, None, :]
    theta = np.zeros((P, n + 1))

    def objective(th: np.ndarray) -> np.ndarray:
        f = np.matmul(Z, th[:, :, None])[:, :, 0]
        loss = (np.logaddexp(0.0, f) - t * f) * mask
        return loss.sum(1) / count[:, 0] + 0.5 * (reg * th * th).sum(1)

    current = objective(theta)
    for _ in range(max_iter):
        f = np.matmul(Z, theta[:, :, None])[:, :, 0]
        prob = 0.5 * (1.0 + np.tanh(0.5 * f))  # the logistic function, without overflow
        grad = np.matmul(Zt, ((prob - t) * mask / count)[:, :, None])[:, :, 0] + reg * theta
        wts = prob * (1 - prob) * mask / count
        H = np.matmul(Zt * wts[:, None, :], Z) + ridge
        step = np.linalg.solve(H, grad[:, :, None])[:, :, 0]
        # damped Newton: halve the step where the objective would not decrease
        size = np.ones((P, 1))
        new = objective(theta - step)
        for _ in range(30):
            bad = new > current
            if not bad.any():
                break
            size = np.where(bad[:, None], size * 0.5, size)
            new = objective(theta - size * step)
        better = new < current
        theta = np.where(better[:, None], theta - size * step, theta)
        decrease = np.where(better, current - new, 0.0)
        current = np.minimum(new, current)
        if float((decrease / np.maximum(np.abs(current), 1e-300)).max()) < tol:
            break
    beta, b = theta[:, :-1], theta[:, -1]
    # a = L^-T beta on each problem's real rows (padded rows stay 0)
    LT = (L * mask[:, :, None]).transpose(0, 2, 1) + pad
    a = np.linalg.solve(LT, beta[:, :, None])[:, :, 0] * mask
    return a, b
