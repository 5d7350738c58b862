"""The seed's post-processing: concepts related across genres.

Each concept's mean CAV (its R CAVs averaged) is compared with every other
(cosine similarity, for hover highlighting), the concepts of all genres are grouped by
k-means on their unit-length mean CAVs, the cluster centres are laid out in 2-D by
t-SNE (scaled to [-1, 1]), and each cluster's concepts are placed on a small circle
around its centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConceptMap:
    labels: np.ndarray  # (K,) cluster of each concept
    cluster_ids: np.ndarray  # (C,)
    cluster_xy: np.ndarray  # (C, 2) centres on the map
    xy: np.ndarray  # (K, 2) concept positions
    similarity: np.ndarray  # (K, K) cosine of mean CAVs


def cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-30)
    return (v @ v.T).astype(np.float32)


def layout_centres(centres: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """t-SNE of (C, D) cluster centres to (C, 2), scaled into [-1, 1]."""
    c = len(centres)
    if c == 0:
        return np.zeros((0, 2), np.float32)
    if c == 1:
        return np.zeros((1, 2), np.float32)
    if c <= 3:  # t-SNE needs a few points; place them on a circle
        angles = 2 * np.pi * np.arange(c) / c
        return np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    from sklearn.manifold import TSNE

    perp = float(min(perplexity, max(1.0, (c - 1) / 3)))
    xy = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed, metric="cosine",
              method="exact" if c < 200 else "barnes_hut").fit_transform(
        np.asarray(centres, dtype=np.float64)
    )
    xy = xy - xy.mean(0)
    return (xy / max(np.abs(xy).max(), 1e-12)).astype(np.float32)


def concept_map(mean_cavs: np.ndarray, n_clusters: int, perplexity: float = 5.0, seed: int = 0) -> ConceptMap:
    """Cluster (K, D) mean CAVs, lay out the centres, place concepts around them."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small problems: threads only contend
        return _concept_map(mean_cavs, n_clusters, perplexity, seed)


def _concept_map(mean_cavs: np.ndarray, n_clusters: int, perplexity: float, seed: int) -> ConceptMap:
    from sklearn.cluster import KMeans

    k = len(mean_cavs)
    sim = cosine_similarity(mean_cavs) if k else np.zeros((0, 0), np.float32)
    if k == 0:
        empty = np.zeros(0, np.int64)
        return ConceptMap(empty, empty, np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), sim)
    unit = np.asarray(mean_cavs, np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-30)
    # k-means and t-SNE only need distances: work in the K-dimensional span of the
    # vectors (an isometry), not in the thousands of dimensions of the activations
    if unit.shape[1] > k:
        evals, evecs = np.linalg.eigh(unit @ unit.T)
        unit = evecs * np.sqrt(np.clip(evals, 0, None))[None, :]  # rows: same Gram matrix, K dims
    c = max(1, min(int(n_clusters), k))
    km = KMeans(n_clusters=c, n_init=10, random_state=seed).fit(unit)
    used = np.unique(km.labels_)  # k-means may leave a cluster empty with duplicate points
    remap = {int(old): new for new, old in enumerate(used)}
    labels = np.array([remap[int(l)] for l in km.labels_], dtype=np.int64)
    centres = km.cluster_centers_[used]
    cxy = layout_centres(centres, perplexity, seed)
    if len(cxy) > 1:
        gaps = np.linalg.norm(cxy[:, None] - cxy[None, :], axis=2)
        radius = 0.3 * float(gaps[gaps > 0].min()) if (gaps > 0).any() else 0.1
    else:
        radius = 0.1
    xy = np.zeros((k, 2), np.float32)
    for ci in range(len(used)):
        members = np.flatnonzero(labels == ci)
        angles = 2 * np.pi * np.arange(len(members)) / len(members) + np.pi / 2
        xy[members] = cxy[ci] + radius * np.stack([np.cos(angles), np.sin(angles)], 1)
    return ConceptMap(labels, np.arange(len(used), dtype=np.int64), cxy, xy, sim)
