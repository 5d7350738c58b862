"""Unit tests of the ACE building blocks: small synthetic inputs, a tiny random network."""

from __future__ import annotations

import numpy as np
import pytest

from whypop.ace import flags, stats
from whypop.ace.activations import ActivationCache, LayerProbe, digest, masked_means, weights_digest
from whypop.ace.cav import CavPair, fit_cavs, split_pair
from whypop.ace.cluster import discover_concepts, passes_filter
from whypop.ace.patches import make_patches, mask_bbox
from whypop.ace.segment import segment_masks
from whypop.ace.summary import concept_map
from whypop.ace.tcav import directional_derivatives, tcav_scores


def spectrogram(seed: int = 0, size: int = 64) -> np.ndarray:
    """Grey noise with a bright blob and a black time band (a silent gap)."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(120, 12, (size, size)), 0, 255)
    img[10:22, 30:50] = 230
    img[:, 8:14] = 0
    return img.astype(np.uint8)


@pytest.fixture(scope="module")
def tiny():
    import torch

    from whypop.model import build_model

    torch.manual_seed(0)
    return build_model("resnet18", 3, "none").eval()


# -- segments and patches -------------------------------------------------------------------


def test_slic_masks_min_size_and_iou_dedupe():
    img = spectrogram()
    masks = segment_masks(img, (4, 8, 16), compactness=20, sigma=1.0, min_area=0.01, max_iou=0.5)
    assert masks.dtype == bool and masks.shape[1:] == img.shape and len(masks) > 4
    assert (masks.reshape(len(masks), -1).mean(1) > 0.01).all()
    # masks of one resolution partition the image; across resolutions the IoU stays <= 0.5
    inter = masks.reshape(len(masks), -1).astype(float) @ masks.reshape(len(masks), -1).T.astype(float)
    area = np.diag(inter)
    iou = inter / (area[:, None] + area[None, :] - inter)
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.5 + 1e-9
    # content-following (Lab, compactness 20): segments inside the black band, not across it
    band = np.zeros(img.shape, bool)
    band[:, 8:14] = True
    inside = [float((m & band).sum() / m.sum()) for m in masks]
    assert max(inside) > 0.9
    # a huge minimum drops everything
    assert len(segment_masks(img, (4,), min_area=0.9)) == 0


def test_faithful_vs_inplace_patches():
    img = spectrogram()
    mask = np.zeros(img.shape, bool)
    mask[10:22, 30:50] = True
    inplace = make_patches(img, mask[None], fill=100.4, mode="inplace")[0]
    assert inplace.shape == img.shape
    assert (inplace[mask] == img[mask]).all() and (inplace[~mask] == 100).all()
    faithful = make_patches(img, mask[None], fill=100.4, mode="faithful", size=64)[0]
    assert faithful.shape == (64, 64)
    assert mask_bbox(mask) == (30, 10, 50, 22)
    assert abs(float(faithful.mean()) - 230) < 3  # the crop is the blob, stretched to the frame
    with pytest.raises(ValueError):
        make_patches(img, mask[None], 0, mode="stretch")


# -- clustering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,u,d,min_size,ok",
    [
        (10, 6, 50, 5, True),  # highly common: u > 0.5 n
        (10, 6, 50, 10, False),  # needs more than min_size members
        (40, 12, 50, 5, False),  # u = 12: not > 0.5 n, not > 0.25 D, not > 0.5 D
        (40, 13, 50, 5, True),  # u > 0.25 n and u > 0.25 D
        (100, 26, 50, 5, True),  # u > 0.1 n and u > 0.5 D
        (100, 24, 50, 5, False),
    ],
)
def test_ace_cluster_filter(n, u, d, min_size, ok):
    assert passes_filter(n, u, d, min_size) is ok


def test_discover_concepts_ranks_members_and_filters():
    rng = np.random.default_rng(0)
    common = rng.normal(0, 0.1, (12, 4)) + [5, 0, 0, 0]  # one patch from each of 12 images
    rare = rng.normal(0, 0.1, (12, 4)) + [0, 5, 0, 0]  # 12 patches of one image
    feats = np.concatenate([common, rare])
    images = np.concatenate([np.arange(12), np.zeros(12, int)])
    concepts, labels = discover_concepts(feats, images, n_clusters=2, min_size=3, n_discovery=12, seed=0)
    assert len(labels) == 24 and len(concepts) == 1
    c = concepts[0]
    assert set(c.members) == set(range(12)) and c.n_images == 12
    assert (np.diff(c.distances) >= 0).all()


# -- CAVs and TCAV --------------------------------------------------------------------------


def _cav_data(seed=0, d=300):
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=d)
    concept = rng.normal(size=(30, d)) + 0.8 * direction
    randoms = rng.normal(size=(120, d))
    X = np.concatenate([concept, randoms]).astype(np.float32)
    sets = [30 + rng.choice(120, 30, replace=False) for _ in range(6)]
    pairs = [CavPair(np.arange(30), s) for s in sets]
    return X, pairs, direction


def test_fast_cavs_agree_with_exact_as_sklearn_agrees_with_itself():
    X, pairs, direction = _cav_data()
    fast = fit_cavs(X, pairs, "fast", seed=0)
    exact = fit_cavs(X, pairs, "exact", seed=0)
    other = fit_cavs(X, pairs, "exact", seed=1)
    assert fast.cavs.shape == (6, X.shape[1])
    np.testing.assert_allclose(np.linalg.norm(fast.cavs, axis=1), 1, atol=1e-5)
    cos = float((fast.cavs * exact.cavs).sum(1).mean())
    seeds = float((other.cavs * exact.cavs).sum(1).mean())  # sklearn against itself, another seed
    assert cos > 0.5 and cos > seeds - 0.1, (cos, seeds)
    assert (fast.cavs @ direction > 0).all() and (exact.cavs @ direction > 0).all()  # towards the concept
    assert fast.accuracy.mean() > 0.9 and exact.accuracy.mean() > 0.9
    np.testing.assert_allclose(fast.project(X[:3]), X[:3] @ fast.cavs.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("compiled", [True, False])
def test_fast_sgd_is_sklearns_algorithm(compiled, monkeypatch):
    """Without shuffling, the SGD in the Gram span reproduces sklearn's SGDClassifier."""
    from sklearn.linear_model import SGDClassifier

    from whypop.ace import cav
    from whypop.ace.cav import gram, sgd_hinge_gram

    if not compiled:  # the numpy fallback (batched steps) when numba is missing
        monkeypatch.setattr(cav, "_KERNEL", [None])
    X, pairs, _ = _cav_data()
    splits = [split_pair(p, i) for i, p in enumerate(pairs[:3])]
    for s in splits:
        rows = np.concatenate([s.train])
        K = gram(X[rows])
        a, b = sgd_hinge_gram(K, [np.arange(len(rows))], [s.train_y], 0.01, shuffle=False)
        ref = SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3, shuffle=False).fit(X[rows].astype(np.float64), s.train_y)
        w = X[rows].astype(np.float64).T @ a[0]
        np.testing.assert_allclose(w, ref.coef_[0], rtol=1e-4, atol=1e-6 * np.abs(ref.coef_).max())
        assert b[0] == pytest.approx(ref.intercept_[0], rel=1e-4, abs=1e-8)


def test_logistic_cavs_solve_sklearns_logistic_problem():
    from sklearn.linear_model import LogisticRegression

    X, pairs, _ = _cav_data()
    fit = fit_cavs(X, pairs[:2], "logistic", seed=0)
    s = split_pair(pairs[0], 0)  # the same split
    lr = LogisticRegression(C=1 / (len(s.train) * 0.01), tol=1e-10, max_iter=10000).fit(X[s.train], s.train_y)
    w = lr.coef_[0] / np.linalg.norm(lr.coef_[0])
    assert float(w @ fit.cavs[0]) > 0.999


def test_split_truncates_and_stratifies():
    pair = CavPair(np.arange(10), np.arange(100, 130))
    s = split_pair(pair, 0)
    assert len(s.train) + len(s.test) == 20  # both sets truncated to 10
    assert s.test_y.sum() == len(s.test_y) - s.test_y.sum()  # stratified
    assert set(s.train[s.train_y == 1]) | set(s.test[s.test_y == 1]) == set(range(10))


def test_tcav_sign_uses_the_class_logit(tiny):
    """Score = share of images whose logit rises along the CAV (paper definition)."""
    import torch

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 64, 64), dtype=np.uint8)
    probe = LayerProbe(tiny, "layer3.1", "cpu", batch_size=3)
    grads = probe.gradients(images, 1, "logit")
    acts = probe.activations(images)
    # finite difference: moving the activation along the gradient raises logit 1
    from whypop.model import preprocess

    step = 1e-2 * grads[0] / np.linalg.norm(grads[0])
    outs = []
    for delta in (0.0, 1.0):
        handle = probe.module.register_forward_hook(
            lambda m, i, o, d=delta: o + torch.as_tensor(d * step[None], dtype=o.dtype))
        with torch.inference_mode():
            outs.append(float(tiny(preprocess(images[:1]))[0, 1]))
        handle.remove()
    assert outs[1] > outs[0]
    assert tcav_scores(grads, grads[:1].reshape(1, -1))[0] >= 0.25
    assert tcav_scores(grads, -grads[:1].reshape(1, -1))[0] < 1.0
    # loss mode: minus the cross-entropy gradient, so positive still means "class up"
    loss = probe.gradients(images, 1, "loss")
    dd = (grads.reshape(4, -1) * loss.reshape(4, -1)).sum(1)
    assert (dd > 0).all()
    assert acts.shape[0] == 4 and directional_derivatives(grads, grads[:2].reshape(2, -1)).shape == (4, 2)


def test_gradients_match_plain_autograd(tiny):
    import torch

    from whypop.model import get_layer, preprocess

    images = np.random.default_rng(1).integers(0, 255, (2, 64, 64), dtype=np.uint8)
    probe = LayerProbe(tiny, "layer2.1", "cpu")
    fast = probe.gradients(images, 2, "logit")
    store = {}
    handle = get_layer(tiny, "layer2.1").register_forward_hook(lambda m, i, o: store.setdefault("a", o))
    x = preprocess(images).requires_grad_(True)
    logits = tiny(x)
    handle.remove()
    (ref,) = torch.autograd.grad(logits[:, 2].sum(), store["a"])
    np.testing.assert_allclose(fast, ref.numpy(), rtol=1e-4, atol=1e-6)


# -- significance and flags -----------------------------------------------------------------


def test_paired_ttest_and_corrections():
    from scipy.stats import ttest_rel

    rng = np.random.default_rng(0)
    null = rng.uniform(0.3, 0.7, 20)
    scores = np.stack([null + 0.3 + rng.normal(0, 0.05, 20), null + rng.normal(0, 0.05, 20), null, null + 0.2])
    p = stats.paired_pvalues(scores, null)
    assert p[0] == pytest.approx(ttest_rel(scores[0], null).pvalue)
    assert p[2] == 1.0 and p[3] == 0.0  # no difference; a constant shift
    assert list(stats.significant([0.001, 0.004, 0.03], 0.05, "none")) == [True, True, True]
    assert list(stats.significant([0.001, 0.02, 0.03], 0.05, "bonferroni")) == [True, False, False]
    assert list(stats.significant([0.001, 0.02, 0.03], 0.05, "holm")) == [True, True, True]  # 0.05/2, 0.05/1
    assert list(stats.significant([0.001, 0.03, 0.02], 0.05, "holm")) == [True, True, True]
    assert list(stats.significant([0.04, 0.001, 0.03], 0.05, "holm")) == [False, True, False]
    with pytest.raises(ValueError):
        stats.significant([0.1], 0.05, "fdr")


def test_flags_black_bands_silence_and_lonely_clusters():
    img = spectrogram()
    black, banded = flags.band_map(img, 16)
    band = np.zeros(img.shape, bool)
    band[:, 8:14] = True
    d = flags.darkness([flags.patch_darkness(black, banded, band)])
    assert d.black_share == 1.0 and flags.darkness_flag(d, 0.5)["flag"] == "augmentation-band"
    img2 = img.copy()
    img2[40:50, 40:50] = 0  # a black square, not a band
    black2, banded2 = flags.band_map(img2, 16)
    sq = np.zeros(img.shape, bool)
    sq[40:50, 40:50] = True
    d2 = flags.darkness([flags.patch_darkness(black2, banded2, sq)])
    assert flags.darkness_flag(d2, 0.5)["flag"] == "silence"
    blob = np.zeros(img.shape, bool)
    blob[10:22, 30:50] = True
    assert flags.darkness_flag(flags.darkness([flags.patch_darkness(black, banded, blob)]), 0.5) is None
    lonely = flags.lonely_flags(np.array([0, 0, 0, 1, 2]), np.array([0.9, 0.2, 0.3, 0.9, 0.3]),
                                np.array([True, False, False, True, False]), max_size=2)
    assert set(lonely) == {4} and lonely[4]["flag"] == "lonely-cluster"


# -- activation cache -------------------------------------------------------------------------


def test_activation_cache_hits_and_misses(tmp_path, tiny):
    import torch

    images = np.random.default_rng(2).integers(0, 255, (3, 64, 64), dtype=np.uint8)
    cache = ActivationCache(tmp_path)
    probe = LayerProbe(tiny, "layer2.1", "cpu")
    wkey = weights_digest(tiny)
    calls = []

    def get(p, imgs, key_weights, layer="layer2.1"):
        key = digest("activations", key_weights, layer, imgs)
        return cache.compute(key, (len(imgs), *p.output_shape(64)), lambda out: calls.append(1) or p.activations(imgs, out))

    a = get(probe, images, wkey)
    b = get(probe, images, wkey)
    assert cache.misses == 1 and cache.hits == 1 and len(calls) == 1
    np.testing.assert_array_equal(a, b)
    changed = images.copy()
    changed[0, 0, 0] ^= 1
    get(probe, changed, wkey)  # new inputs
    assert cache.misses == 2
    with torch.no_grad():
        next(tiny.parameters()).add_(0.01)
    assert weights_digest(tiny) != wkey
    get(probe, images, weights_digest(tiny))  # new weights
    assert cache.misses == 3
    get(LayerProbe(tiny, "layer3.1", "cpu"), images, weights_digest(tiny), "layer3.1")  # new layer
    assert cache.misses == 4 and len(calls) == 4
    assert not list(tmp_path.glob(".tmp-*"))


def test_masked_means_weights_the_cells_a_mask_covers():
    acts = np.random.default_rng(0).random((2, 3, 4, 4)).astype(np.float32)
    masks = np.zeros((2, 64, 64), bool)
    masks[0] = True
    masks[1, :16, 48:] = True
    out = masked_means(acts, masks)
    np.testing.assert_allclose(out[0], acts[0].mean((1, 2)), rtol=1e-5)
    np.testing.assert_allclose(out[1], acts[1, :, 0, 3], rtol=1e-5)


# -- summary ------------------------------------------------------------------------------------


def test_concept_map_clusters_similarity_and_layout():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 500))
    cavs = np.concatenate([c + 0.05 * rng.normal(size=(3, 500)) for c in centres]).astype(np.float32)
    m = concept_map(cavs, n_clusters=4, perplexity=5, seed=0)
    assert m.similarity.shape == (12, 12) and np.allclose(np.diag(m.similarity), 1, atol=1e-5)
    assert np.allclose(m.similarity, m.similarity.T)
    assert len(set(m.labels[:3])) == 1 and len(set(m.labels)) == 4
    assert m.cluster_xy.shape == (4, 2) and np.abs(m.cluster_xy).max() <= 1 + 1e-6
    for i, label in enumerate(m.labels):  # each concept sits next to its own centre
        d = np.linalg.norm(m.cluster_xy - m.xy[i], axis=1)
        assert int(np.argmin(d)) == int(label)
    one = concept_map(cavs[:1], 10)
    assert one.labels.tolist() == [0] and one.cluster_xy.shape == (1, 2)
