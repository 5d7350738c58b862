"""Significance of TCAV scores: ACE's paired t-test plus a multiple-testing correction.

A concept's R scores (one per random experiment) are compared with the genre's null
scores (random set vs random set, same experiments) by a paired t-test, as the ACE
reference does (``scipy.stats.ttest_rel``, two-sided). The reference removes concepts
with p > 0.01 without correction; we keep every concept with its p-value and mark it
significant only after a family-wise correction over the concepts tested for the genre
(Holm by default, Bonferroni as the TCAV authors recommend, or none).
"""

from __future__ import annotations

import numpy as np

from whypop.config import Correction, choices

CORRECTIONS = choices(Correction)


def paired_pvalues(scores: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Two-sided paired t-test p-values (K,) of each row of ``scores`` (K, R) against ``null`` (R,).

    Rows whose differences are all equal have no variance: p = 1 when they are all
    zero (no difference), p = 0 when they are a constant non-zero shift.
    """
    from scipy.stats import ttest_rel

    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    null = np.asarray(null, dtype=np.float64)
    if scores.shape[1] != null.shape[0]:
        raise ValueError(f"scores have {scores.shape[1]} experiments, the null {null.shape[0]}")
    if scores.shape[1] < 2:
        raise ValueError("a paired t-test needs at least 2 random experiments")
    diff = scores - null[None, :]
    out = np.ones(len(scores))
    scale = np.maximum(np.abs(scores).max(axis=1), np.abs(null).max()) + 1e-300
    constant = np.ptp(diff, axis=1) <= 1e-12 * scale
    out[constant] = np.where(np.abs(diff[constant, 0]) > 1e-12 * scale[constant], 0.0, 1.0)
    if (~constant).any():
        out[~constant] = ttest_rel(scores[~constant], np.broadcast_to(null, scores[~constant].shape), axis=1).pvalue
    return out


def significant(pvalues: np.ndarray, alpha: float = 0.01, correction: str = "holm") -> np.ndarray:
    """Which p-values are significant at family-wise level ``alpha`` after ``correction``."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction {correction!r}: allowed are {', '.join(CORRECTIONS)}")
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    if m == 0:
        return np.zeros(0, dtype=bool)
    if correction == "none":
        return p <= alpha
    if correction == "bonferroni":
        return p <= alpha / m
    order = np.argsort(p, kind="stable")
    out = np.zeros(m, dtype=bool)
    for rank, i in enumerate(order):  # Holm: step down until the first failure
        if p[i] > alpha / (m - rank):
            break
        out[i] = True
    return out


def threshold(m: int, alpha: float, correction: str) -> str:
    """A readable description of the test a p-value failed (for flag reasons)."""
    if correction == "none":
        return f"p > {alpha:g} (no correction)"
    name = "Holm" if correction == "holm" else "Bonferroni"
    return f"not significant at {alpha:g} after {name} correction over {m} concepts"
