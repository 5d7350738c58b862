"""Concepts from clusters of patch activations, with ACE's filter.

ACE clusters the spatial means of the patches' activations with k-means (seeded here;
the reference has no seed). A cluster becomes a concept only if it has more than
``min_size`` members and passes one of three rules on u = distinct source images,
n = cluster size, D = discovery images:

- u > 0.5 n (highly common), or
- u > 0.25 n and u > 0.25 D (mildly common, mildly populated), or
- u > 0.1 n and u > 0.5 D (non-common, highly populated).

Every member is kept, ranked by distance to the centre; CAVs use the closest
``max_members`` (ACE's ``max_imgs``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Concept:
    """A cluster that passed the filter: members ranked by distance to the centre."""

    cluster: int  # k-means label
    members: np.ndarray  # patch indices, closest first
    distances: np.ndarray  # Euclidean, in the clustered feature space
    n_images: int  # distinct source images (u)

    def top(self, k: int) -> np.ndarray:
        return self.members[:k]


def passes_filter(n: int, u: int, n_discovery: int, min_size: int) -> bool:
    """ACE's rule: more than ``min_size`` members and one of the three coverage rules."""
    if n <= min_size:
        return False
    highly_common = u > 0.5 * n
    mildly = u > 0.25 * n and u > 0.25 * n_discovery
    populated = u > 0.1 * n and u > 0.5 * n_discovery
    return bool(highly_common or mildly or populated)


def discover_concepts(
    features: np.ndarray,
    image_index: np.ndarray,
    n_clusters: int,
    min_size: int,
    n_discovery: int,
    seed: int = 0,
) -> tuple[list[Concept], np.ndarray]:
    """k-means over (N, d) patch features; returns the concepts (largest first) and all labels.

    ``image_index`` (N,) names each patch's source image. Fewer patches than clusters
    reduce the number of clusters to the number of patches.
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    features = np.asarray(features, dtype=np.float32)
    image_index = np.asarray(image_index)
    k = min(int(n_clusters), len(features))
    if k < 1:
        return [], np.zeros(0, dtype=np.int64)
    with threadpool_limits(1):  # small problem: threads only contend (with torch's, too)
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(features)
    dist = km.transform(features)[np.arange(len(features)), km.labels_]
    concepts = []
    for label in range(k):
        idx = np.flatnonzero(km.labels_ == label)
        u = len(np.unique(image_index[idx]))
        if not passes_filter(len(idx), u, n_discovery, min_size):
            continue
        order = idx[np.argsort(dist[idx], kind="stable")]
        concepts.append(Concept(label, order, dist[order].astype(np.float64), u))
    concepts.sort(key=lambda c: (-len(c.members), c.cluster))
    return concepts, km.labels_.astype(np.int64)
