"""Activations at a bottleneck layer, gradients of a class output there, and their disk cache.

Activations run once per input set, in batches, channels_last, under
``torch.inference_mode``, and stop at the layer (nothing after it is computed).
Gradients run once per genre: parameters frozen, the layer's output replaced by a
detached tensor that requires grad, one ``torch.autograd.grad`` per batch, so autograd
records only what follows the layer.

Arrays are cached under ``<run>/cache/activations/<key>.npy`` where the key hashes the
model weights, the layer, the exact input bytes and the computation's parameters:
changed weights, layer, inputs or parameters give a new key, so the cache cannot go
stale. Cached arrays are memory-mapped (read on demand, not held in memory).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from whypop.errors import ConfigError
from whypop.model import get_layer, preprocess

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

Tick = Callable[[int, int], None]  # (done, total)


class _Stop(Exception):
    """Raised by the layer hook to end a forward pass at the layer."""


def weights_digest(model: "torch.nn.Module") -> str:
    """A content hash of the model's parameters and buffers (names, shapes, values)."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(memoryview(t.numpy()).cast("B"))
    return h.hexdigest()


def digest(*parts: object) -> str:
    """A short hash of strings, numbers and arrays (arrays by dtype, shape and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        if isinstance(p, np.ndarray):
            a = np.ascontiguousarray(p)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(memoryview(a).cast("B"))
        else:
            h.update(repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()


class ActivationCache:
    """Content-addressed ``.npy`` files; ``None`` root disables caching (memory only)."""

    def __init__(self, root: str | Path | None):
        self.root = None if root is None else Path(root)
        self.hits = 0
        self.misses = 0
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path | None:
        return None if self.root is None else self.root / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            arr = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as exc:  # truncated or foreign file: recompute
            log.warning("ignoring unreadable cache file %s (%s)", path, exc)
            return None
        self.hits += 1
        return arr

    def compute(self, key: str, shape: tuple[int, ...], fill: Callable[[np.ndarray], None]) -> np.ndarray:
        """The cached array for ``key``, or a new one that ``fill(out)`` writes in place.

        With a cache root the array is written straight into a memory-mapped file
        (renamed into place when complete), so large results never sit in memory.
        """
        hit = self.get(key)
        if hit is not None and hit.shape == tuple(shape):
            return hit
        self.misses += 1
        path = self.path(key)
        if path is None:
            out = np.empty(shape, dtype=np.float32)
            fill(out)
            return out
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
        os.close(fd)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=tuple(shape))
            fill(out)
            out.flush()
            del out
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return np.load(path, mmap_mode="r")


class LayerProbe:
    """A model cut at one named layer: activations there, and class gradients there.

    ``batch_size`` images go through at once; ``cancel()`` is checked between
    batches (it raises to stop). Images are uint8 spectrograms (N, H, W).
    """

    def __init__(self, model: "torch.nn.Module", layer: str, device: "torch.device | str" = "cpu", batch_size: int = 32):
        import torch

        self.model = model.eval()
        self.layer = layer
        self.module = get_layer(model, layer)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._shape: tuple[int, ...] | None = None

    def output_shape(self, image_size: int) -> tuple[int, ...]:
        """Shape of one image's activation (C, h, w) at the layer."""
        if self._shape is None:
            probe = np.zeros((1, image_size, image_size), dtype=np.uint8)
            self._shape = tuple(self._forward(probe).shape[1:])
        return self._shape

    def _forward(self, images: np.ndarray) -> "torch.Tensor":
        import torch

        captured: list[torch.Tensor] = []

        def hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor):
                raise ConfigError(f"layer {self.layer!r} does not output a single tensor")
            captured.append(output)
            raise _Stop

        handle = self.module.register_forward_hook(hook)
        try:
            with torch.inference_mode():
                self.model(preprocess(images, self.device))
        except _Stop:
            pass
        finally:
            handle.remove()
        if not captured:
            raise ConfigError(f"layer {self.layer!r} is not used in the model's forward pass")
        return captured[0]

    def activations(
        self, images: np.ndarray, out: np.ndarray | None = None, tick: Tick | None = None,
        cancel: Callable[[], None] | None = None,
    ) -> np.ndarray:
        """Activations (N, C, h, w) float32 of uint8 images (N, H, W), written into ``out``."""
        n = len(images)
        if out is None:
            out = np.empty((n, *self.output_shape(images.shape[-1])), dtype=np.float32)
        for start in range(0, n, self.batch_size):
            if cancel is not None:
                cancel()
            batch = np.asarray(images[start : start + self.batch_size])
            out[start : start + len(batch)] = self._forward(batch).float().cpu().numpy()
            if tick is not None:
                tick(min(n, start + self.batch_size), n)
        return out

    def gradients(
        self, images: np.ndarray, class_index: int, mode: str = "logit", out: np.ndarray | None = None,
        tick: Tick | None = None, cancel: Callable[[], None] | None = None,
    ) -> np.ndarray:
        """Per image, the gradient (N, C, h, w) at the layer of what raises the class.

        ``logit`` (TCAV paper): d logit_k / d activation. ``loss`` (ACE reference code):
        minus d cross-entropy(k) / d activation, negated so that in both modes a positive
        dot product with a CAV means the concept pushes the class up.
        """
        import torch

        if mode not in ("logit", "loss"):
            raise ConfigError(f"tcav gradient {mode!r}: allowed are logit, loss")
        n = len(images)
        if out is None:
            out = np.empty((n, *self.output_shape(images.shape[-1])), dtype=np.float32)
        leaves: list[torch.Tensor] = []

        def hook(_module, _inputs, output):
            leaf = output.detach().requires_grad_(True)
            leaves.append(leaf)
            return leaf

        handle = self.module.register_forward_hook(hook)
        try:
            for start in range(0, n, self.batch_size):
                if cancel is not None:
                    cancel()
                leaves.clear()
                batch = np.asarray(images[start : start + self.batch_size])
                with torch.enable_grad():
                    logits = self.model(preprocess(batch, self.device))
                    if mode == "logit":
                        objective = logits[:, class_index].sum()
                    else:
                        target = torch.full((len(batch),), class_index, dtype=torch.long, device=logits.device)
                        objective = -torch.nn.functional.cross_entropy(logits, target, reduction="sum")
                    (grad,) = torch.autograd.grad(objective, leaves[0])
                out[start : start + len(batch)] = grad.float().cpu().numpy()
                if tick is not None:
                    tick(min(n, start + self.batch_size), n)
        finally:
            handle.remove()
        return out


def spatial_means(acts: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Mean over the spatial axes (N, C) of (N, C, h, w) activations, read in chunks."""
    if acts.ndim == 2:
        return np.asarray(acts, dtype=np.float32)
    out = np.empty(acts.shape[:2], dtype=np.float32)
    for s in range(0, len(acts), chunk):
        out[s : s + chunk] = np.asarray(acts[s : s + chunk]).mean(axis=tuple(range(2, acts.ndim)))
    return out


def flat_rows(acts: np.ndarray, index: Iterable[int]) -> np.ndarray:
    """Chosen rows of (N, ...) activations, flattened to (len(index), D) float32."""
    idx = np.asarray(list(index), dtype=np.int64)
    return np.asarray(acts[idx], dtype=np.float32).reshape(len(idx), -1)


def masked_means(acts: np.ndarray, masks: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Per patch, the mean activation (N, C) over the cells its mask covers.

    ``masks`` (N, H, W) are the patches' masks in input pixels; each is reduced to the
    activation grid (h, w) as the share of each cell it covers, and the activations are
    averaged with those weights. For in-place patches (a segment in its full frame) this
    is the network's response to the segment, not diluted by the fill around it.
    """
    n, c, h, w = acts.shape
    H, W = masks.shape[1:]
    ys = (np.arange(H) * h) // H
    xs = (np.arange(W) * w) // W
    out = np.empty((n, c), dtype=np.float32)
    for s in range(0, n, chunk):
        m = np.asarray(masks[s : s + chunk], dtype=np.float32)
        if H % h == 0 and W % w == 0:
            cells = m.reshape(len(m), h, H // h, w, W // w).sum(axis=(2, 4))
        else:
            cells = np.zeros((len(m), h, w), np.float32)
            np.add.at(cells, (slice(None), ys[:, None], xs[None, :]), m)
        cells /= np.maximum(cells.reshape(len(m), -1).sum(1), 1e-12)[:, None, None]
        out[s : s + chunk] = np.einsum("nchw,nhw->nc", np.asarray(acts[s : s + chunk], np.float32), cells)
    return out
