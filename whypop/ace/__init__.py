"""ACE concept discovery with TCAV scores, one small module per step.

- :mod:`~whypop.ace.segment`: SLIC segments at several resolutions (ACE's size and IoU rules)
- :mod:`~whypop.ace.patches`: segments to network inputs (``faithful`` or ``inplace``)
- :mod:`~whypop.ace.activations`: activations and class gradients at a layer, disk cache
- :mod:`~whypop.ace.cluster`: k-means on patch activations and ACE's concept filter
- :mod:`~whypop.ace.cav`: concept activation vectors (``fast`` batched solve, ``exact`` sklearn)
- :mod:`~whypop.ace.tcav`: TCAV scores (sign count) and magnitudes
- :mod:`~whypop.ace.stats`: paired t-test against the random null, Holm / Bonferroni
- :mod:`~whypop.ace.flags`: spurious-concept flags (bands or silence, lonely cluster, not significant)
- :mod:`~whypop.ace.summary`: mean CAVs, cross-genre clusters, t-SNE concept map, similarity
- :mod:`~whypop.ace.placement`: where concepts lie in a song discovery never saw (same segments, calibrated radii)
- :mod:`~whypop.ace.planted`: checks against the demo's planted ground truth
- :mod:`~whypop.ace.extractor`: :class:`ConceptExtractor`, ACE for one genre at a time

torch, scikit-learn, scipy and scikit-image load on first use, so that the dashboard,
which imports the extraction stage for its jobs, starts without them. This package knows
no run store: the extraction stage above it reads and writes the store;
the protocol and measured figures are in ``docs/extraction.md``.
"""

from whypop.ace.extractor import ConceptExtractor, GenreImages, GenreResult, RandomSets

__all__ = ["ConceptExtractor", "GenreImages", "GenreResult", "RandomSets"]
