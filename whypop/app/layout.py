"""Layout computations for the panels at real scale: pure functions from numbers to positions.

- :func:`swarm_offsets` and :func:`fit_swarm`: panel 1's beeswarm, with the largest marker
  size at which every genre's swarm fits its slot without two markers overlapping.
- :func:`sunflower` and :func:`pack_map`: panel 2's concept map, each cluster's concepts
  packed on a sunflower (Vogel) spiral whose radius grows with the member count, the
  clusters pushed apart from their t-SNE positions until no two overlap, and the marker
  size that the resulting extent allows.
- :func:`region_grid` and :func:`legend_rows`: panel 5's hover names of the regions under
  the pointer and its side legend keyed by colour.

Units: panel 2 lays concepts out in "slots" (1 = the distance between two neighbouring
concepts); a marker of diameter ``px_per_unit - gap`` then never touches its neighbours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

BASE_SIZE = 10  # px: the usual concept marker diameter
SMALLEST = 4  # px: markers never shrink below this
MAX_SWARM = 0.42  # half-width of a genre's swarm, in genre slots
GOLDEN_ANGLE = math.pi * (3 - math.sqrt(5))
CHAR_PX = 5.6  # mean width of a 10 px label character
LINE_PX = 14.0  # height of one label line
CLUSTER_MARK_PX = 9.0  # the marker between a cluster's disc and its label


# -- panel 1: the beeswarm ----------------------------------------------------------------------


def swarm_offsets(values: Sequence[float], dx: float, dy: float, limit: float | None = MAX_SWARM) -> np.ndarray:
    """Horizontal offsets for a beeswarm: no two points closer than one marker.

    Points are placed in order of value; each takes the offset of smallest magnitude at
    which the ellipse distance ((dx_i/dx)^2 + (dy_i/dy)^2) to every placed point is at
    least 1 (``dx``, ``dy``: a marker's diameter in x and y data units). Offsets wider
    than ``limit`` are scaled down to fit the genre's slot (None: never). Deterministic.
    """
    v = np.asarray(values, dtype=float)
    out = np.zeros(v.size)
    if v.size == 0:
        return out
    order = np.argsort(v, kind="stable")
    placed_y = np.empty(v.size)
    placed_o = np.empty(v.size)
    n = 0
    for i in order:
        y = v[i]
        near = np.abs(placed_y[:n] - y) < dy
        py, po = placed_y[:n][near], placed_o[:n][near]
        best = 0.0
        if py.size:
            w = dx * np.sqrt(np.maximum(0.0, 1.0 - ((py - y) / dy) ** 2))
            cands = np.concatenate([[0.0], po - w, po + w])
            cands = cands[np.lexsort((cands, np.abs(cands)))]  # smallest magnitude first, left before right
            dist = ((cands[:, None] - po[None, :]) / dx) ** 2 + ((py[None, :] - y) / dy) ** 2
            ok = np.all(dist >= 1 - 1e-9, axis=1)
            best = float(cands[np.argmax(ok)]) if ok.any() else float(cands[-1])
        out[i] = best
        placed_y[n], placed_o[n] = y, best
        n += 1
    widest = float(np.abs(out).max())
    if limit is not None and widest > limit:
        out *= limit / widest
    return out


@dataclass(frozen=True)
class Swarm:
    """Panel 1's layout: one marker size for all genres, each genre's offsets (in genre slots)."""

    size: float  # marker diameter, px
    offsets: tuple[np.ndarray, ...]
    overlapping: bool  # True when even the smallest markers had to be squeezed


def fit_swarm(groups: Sequence[Sequence[float]], slot_px: float, plot_px: float, y_span: float = 1.0,
              base: float = BASE_SIZE, smallest: float = SMALLEST, limit: float = MAX_SWARM) -> Swarm:
    """The largest marker size (``base`` down to ``smallest``) at which every group's swarm fits its slot.

    ``groups``: the y values of each genre; ``slot_px``: a genre slot's width in pixels;
    ``plot_px``: the plot's height in pixels for ``y_span`` y units. Markers keep a 1 px gap.
    When even the smallest size does not fit, the swarms are squeezed (``overlapping``).
    """
    def attempt(size: float) -> tuple[tuple[np.ndarray, ...], float]:
        dx = (size + 1) / max(1.0, slot_px)
        dy = (size + 1) / max(1.0, plot_px) * y_span
        offsets = tuple(swarm_offsets(g, dx, dy, limit=None) for g in groups)
        return offsets, max((float(np.abs(o).max()) for o in offsets if o.size), default=0.0)

    sizes = np.arange(float(smallest), float(base) + 1e-9, 0.5)
    offsets, widest = attempt(sizes[-1])
    if widest <= limit + 1e-9:
        return Swarm(float(sizes[-1]), offsets, False)
    lo, hi = 0, len(sizes) - 1  # sizes[hi] does not fit; find the largest that does (binary search)
    best = None
    while lo < hi:
        mid = (lo + hi) // 2
        o, w = attempt(sizes[mid])
        if w <= limit + 1e-9:
            best, lo = (sizes[mid], o), mid + 1
        else:
            hi = mid
    if best is not None:
        return Swarm(float(best[0]), best[1], False)
    offsets, widest = attempt(sizes[0])
    if widest <= limit + 1e-9:
        return Swarm(float(sizes[0]), offsets, False)
    return Swarm(float(sizes[0]), tuple(o * (limit / widest) for o in offsets), True)


# -- panel 2: the concept map ---------------------------------------------------------------------


def sunflower(n: int) -> np.ndarray:
    """``n`` points on a Vogel spiral, scaled so the closest two are exactly 1 apart, centred on 0."""
    if n <= 0:
        return np.zeros((0, 2))
    if n == 1:
        return np.zeros((1, 2))
    i = np.arange(n)
    r = np.sqrt(i + 0.5)
    theta = i * GOLDEN_ANGLE
    pts = np.stack([r * np.cos(theta), r * np.sin(theta)], 1)
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    d[np.diag_indices(n)] = np.inf
    return pts / d.min()


@dataclass(frozen=True)
class ClusterPlace:
    """Where a cluster sits on the map (slot units): centre, radius of its members' disc, label anchor."""

    key: int
    x: float
    y: float
    radius: float
    label_x: float
    label_y: float


@dataclass(frozen=True)
class MapLayout:
    positions: dict[int, tuple[float, float]]  # concept id -> (x, y)
    clusters: tuple[ClusterPlace, ...]
    marker_px: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    px_per_unit: float


def pack_map(members: Mapping[int, Sequence[int]], centres: Mapping[int, tuple[float, float]],
             label_chars: Mapping[int, int] | None = None, width_px: float = 440, height_px: float = 360,
             base: float = BASE_SIZE, smallest: float = SMALLEST) -> MapLayout:
    """Lay out the concept map so that no concept hides another.

    ``members``: cluster key -> its concept ids, in the order they should go round the
    cluster (e.g. grouped by genre: each genre then takes a sector); ``centres``: the
    clusters' positions (t-SNE) that the layout keeps as far as it can; ``label_chars``:
    the length of each cluster's label (drawn under the cluster, kept clear of the
    others). ``width_px``/``height_px``: the plot area the map will be drawn in.
    """
    keys = [k for k in members if members[k]]
    label_chars = dict(label_chars or {})
    discs = {k: sunflower(len(members[k])) for k in keys}
    radius = {k: (float(np.linalg.norm(discs[k], axis=1).max()) if len(members[k]) > 1 else 0.0) + 0.5 for k in keys}
    aspect = width_px / max(1.0, height_px)
    start = np.array([centres.get(k, (0.0, 0.0)) for k in keys], dtype=float)
    up = np.array([radius[k] + 0.3 for k in keys])  # disc centre to the footprint's top
    unit_px = base + 2.0  # a slot in pixels; labels have a size in pixels, so repack once the map's scale is known
    for _ in range(4):
        # each cluster's footprint: a box around its disc and the label under it (slot units)
        half_w = np.array([max(radius[k], label_chars.get(k, 0) * CHAR_PX / unit_px / 2) + 0.3 for k in keys])
        label_h = np.array([(LINE_PX + CLUSTER_MARK_PX) / unit_px + 0.2 if label_chars.get(k) else 0.0 for k in keys])
        down = up + label_h  # disc centre to the footprint's bottom
        half_h = (up + down) / 2
        offset = (up - down) / 2  # footprint centre = disc centre + offset (in y)
        boxes = _separate(start, np.stack([half_w, half_h], 1) if keys else np.zeros((0, 2)), aspect)
        xy = boxes - np.stack([np.zeros(len(keys)), offset], 1) if keys else np.zeros((0, 2))
        lo = np.min(boxes - np.stack([half_w, half_h], 1), axis=0) if keys else np.zeros(2)
        hi = np.max(boxes + np.stack([half_w, half_h], 1), axis=0) if keys else np.ones(2)
        span = np.maximum(hi - lo, 1.0)
        ppu = float(min(width_px / span[0], height_px / span[1]))
        if ppu >= unit_px * 0.95:
            break
        unit_px = max(ppu, smallest + 2.0)
    positions: dict[int, tuple[float, float]] = {}
    places = []
    for n, k in enumerate(keys):
        cx, cy = float(xy[n, 0]), float(xy[n, 1])
        pts = discs[k]
        # members sorted by angle: consecutive members (one genre) share a sector
        order = np.lexsort((np.hypot(pts[:, 0], pts[:, 1]), np.mod(np.arctan2(pts[:, 1], pts[:, 0]) - math.pi / 2, 2 * math.pi)))
        for cid, j in zip(members[k], order):
            positions[int(cid)] = (cx + float(pts[j, 0]), cy + float(pts[j, 1]))
        # the cluster's marker just under its disc, clear of the members at any scale
        places.append(ClusterPlace(int(k), cx, cy, radius[k], cx, cy - radius[k] - (CLUSTER_MARK_PX / 2 + 1) / ppu))
    marker = float(min(base, max(smallest, ppu - 2.0)))
    return MapLayout(positions, tuple(places), marker, (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1])), ppu)


def _separate(xy: np.ndarray, half: np.ndarray, aspect: float = 1.0, iterations: int = 600) -> np.ndarray:
    """Boxes (half-sizes ``half``, (n, 2)) at the t-SNE centres' relative places, none overlapping, compact.

    The centres are scaled to the boxes' size; then, in turn, a pull towards the middle
    (weaker along the plot's long side, ``aspect`` = width / height) and pushes apart
    along the axis of least overlap; the last rounds only push, until nothing overlaps.
    """
    n = len(xy)
    if n <= 1:
        return np.zeros((n, 2))
    xy = xy - xy.mean(axis=0)
    spread = float(np.sqrt((xy ** 2).sum(axis=1).mean())) or 1.0
    target = float(np.sqrt((4 * half[:, 0] * half[:, 1]).sum() / np.pi))  # radius of a disc as big as all boxes
    xy = xy * (target / spread)
    rng = np.random.default_rng(0)
    xy = xy + rng.normal(scale=1e-3, size=xy.shape)  # coincident centres need a direction
    need = half[:, None, :] + half[None, :, :] + 0.15  # (n, n, 2) centre distance needed per axis
    stretch = np.array([math.sqrt(aspect), 1 / math.sqrt(aspect)])
    eye = np.eye(n, dtype=bool)
    for it in range(iterations):
        diff = xy[:, None] - xy[None]  # (n, n, 2)
        pen = need - np.abs(diff)  # penetration per axis
        hit = (pen[..., 0] > 0) & (pen[..., 1] > 0) & ~eye
        if it >= iterations // 2 and not hit.any():
            break
        if it < iterations // 2:
            xy = xy - 0.03 * xy / stretch  # gravity, weaker along the long side
        if not hit.any():
            continue
        axis = np.argmin(pen / stretch, axis=-1)  # push along the axis of least overlap (favour the long side)
        amount = np.where(hit, np.take_along_axis(pen, axis[..., None], -1)[..., 0] / 2 * 1.02, 0.0)
        sign = np.sign(np.take_along_axis(diff, axis[..., None], -1)[..., 0])
        sign[sign == 0] = 1
        move = np.zeros((n, n, 2))
        np.put_along_axis(move, axis[..., None], (amount * sign)[..., None], -1)
        xy = xy + move.sum(axis=1)
    return xy


# -- panel 5: the song -------------------------------------------------------------------------------


def region_grid(boxes: Sequence[tuple[int, int, int, int]], names: Sequence[str], width: int, height: int,
                cols: int, rows: int) -> list[list[str]]:
    """Per cell of a ``rows`` x ``cols`` grid over the image (row 0 at the bottom): the names of the regions there.

    ``boxes`` are (x0, y0, x1, y1) in image pixels with y0 at the top; a cell lists each
    name once, in the order given, joined by ", ".
    """
    cells: list[list[list[str]]] = [[[] for _ in range(cols)] for _ in range(rows)]
    for (x0, y0, x1, y1), name in zip(boxes, names):
        c0 = max(0, int(math.floor(x0 * cols / width)))
        c1 = min(cols, max(c0 + 1, int(math.ceil(x1 * cols / width))))
        # rows count from the bottom: image row y maps to grid row (height - y) * rows / height
        r0 = max(0, int(math.floor((height - y1) * rows / height)))
        r1 = min(rows, max(r0 + 1, int(math.ceil((height - y0) * rows / height))))
        for r in range(r0, r1):
            for c in range(c0, c1):
                if name not in cells[r][c]:
                    cells[r][c].append(name)
    return [[", ".join(cell) for cell in row] for row in cells]


def legend_rows(height_px: float, line_px: float = 16.0) -> int:
    """How many legend lines fit in ``height_px``."""
    return max(1, int(height_px // line_px))
