"""TCAV scores: how often a concept's direction pushes a class up.

For each score image of the genre, the gradient at the bottleneck (of the class logit,
the TCAV paper's definition; or minus the cross-entropy loss, the ACE reference code's
choice, see :meth:`whypop.ace.activations.LayerProbe.gradients`) is dotted with a
CAV. The score is the share of images where that directional derivative is positive.
With the gradients G (images x D) computed once per genre, all scores are one matrix
product with the CAVs.
"""

from __future__ import annotations

import numpy as np


def directional_derivatives(gradients: np.ndarray, cavs: np.ndarray) -> np.ndarray:
    """(images, P) dot products of each image's flattened gradient with each CAV."""
    import torch

    G = np.asarray(gradients, dtype=np.float32).reshape(len(gradients), -1)
    W = np.asarray(cavs, dtype=np.float32).reshape(len(cavs), -1)
    if G.shape[1] != W.shape[1]:
        raise ValueError(f"gradients have {G.shape[1]} dimensions, CAVs {W.shape[1]}")
    return (torch.from_numpy(np.ascontiguousarray(G)) @ torch.from_numpy(np.ascontiguousarray(W)).T).numpy()


def tcav_scores(gradients: np.ndarray, cavs: np.ndarray) -> np.ndarray:
    """(P,) share of images whose class output rises along each CAV (sign count)."""
    if len(gradients) == 0:
        raise ValueError("TCAV needs at least one score image")
    return sign_count(directional_derivatives(gradients, cavs))


def sign_count(derivatives: np.ndarray) -> np.ndarray:
    """(P,) share of positive directional derivatives (images, P) per CAV."""
    return (np.asarray(derivatives) > 0).mean(axis=0)


def tcav_magnitudes(gradients: np.ndarray, cavs: np.ndarray) -> np.ndarray:
    """(P,) mean directional derivative over the images (Captum's "magnitude" before normalising).

    The sign count saturates (many concepts score 1.0 when the images' gradients agree);
    the magnitude says how strongly the class output rises along the CAV, and breaks ties.
    """
    return directional_derivatives(gradients, cavs).mean(axis=0)
