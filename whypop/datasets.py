"""Collections of audio: FMA's layout and metadata, folder-per-genre, the demo.

Each reader returns the tracks it found (with genre and split) and the problems it met
(missing files, empty genre folders), so preparation can record every failure against
its track and go on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from whypop.decoding import AUDIO_EXTENSIONS
from whypop.config import DatasetConfig
from whypop.errors import InputError
from whypop.features import read_echonest
from whypop.tracks import Track

log = logging.getLogger(__name__)

SPLITS = ("training", "validation", "test")
FMA_SUBSETS = ("small", "medium", "large")  # each includes the ones before it
FMA_REQUIRED = {
    ("track", "genre_top"): "track/genre_top",
    ("set", "split"): "set/split",
    ("set", "subset"): "set/subset",
}


@dataclass
class Collection:
    """What a reader found: tracks to prepare, tracks that failed already, warnings."""

    audio_root: Path
    tracks: list[Track] = field(default_factory=list)
    missing: list[tuple[Track, str]] = field(default_factory=list)  # (track, reason)
    warnings: list[str] = field(default_factory=list)
    echonest: dict[str, dict[str, float | None]] = field(default_factory=dict)


def safe_id(text: str) -> str:
    """A filesystem- and URL-safe id fragment."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "track"


# -- folder per genre ------------------------------------------------------------------


def read_folders(audio_dir: str | Path, cfg: DatasetConfig) -> Collection:
    """``AUDIO_DIR/<genre>/*.{mp3,ogg,flac,wav,au,aiff}`` with a seeded stratified split."""
    root = Path(audio_dir).resolve()
    if not root.is_dir():
        raise InputError(f"audio directory not found: {audio_dir}")
    out = Collection(root)
    genre_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not genre_dirs:
        raise InputError(f"{audio_dir} has no genre folders (expected AUDIO_DIR/<genre>/<files>)")
    used: set[str] = set()

    def new_id(gdir: Path, path: Path) -> str:
        tid = safe_id(f"{gdir.name}-{path.relative_to(gdir).with_suffix('')}")
        base, n = tid, 1
        while tid in used:
            n += 1
            tid = f"{base}-{n}"
        used.add(tid)
        return tid

    for gdir in genre_dirs:
        named = sorted(p for p in gdir.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith("."))
        problems = {p: audio_file_problem(p, [root]) for p in named}
        files = [p for p in named if problems[p] is None]
        if not files:
            out.warnings.append(f"genre folder {gdir.name!r} has no audio files: skipped")
        if cfg.max_tracks:
            files = files[: cfg.max_tracks]
        splits = stratified_split(len(files), cfg.split, cfg.seed, gdir.name)
        for path, split in zip(files, splits):
            out.tracks.append(Track(new_id(gdir, path), gdir.name, split, str(path.relative_to(root)), title=path.stem))
        for path in named:  # named like audio but unusable: recorded with the reason, never opened
            if problems[path] is not None:
                tid = new_id(gdir, path)
                track = Track(tid, gdir.name, hashed_split(tid, cfg.split, cfg.seed), str(path.relative_to(root)),
                              title=path.stem)
                out.missing.append((track, problems[path]))
    return out


def audio_file_problem(path: Path, roots: Sequence[Path]) -> str | None:
    """Why ``path`` is not an audio file to read (None when it is one): the policy of preparation and of
    the dashboard's audio route alike.

    Symlinks are followed, and what they reach must be a regular file inside one of
    ``roots`` (the collection; the route adds the run). FIFOs, sockets and devices are
    refused before anything opens them (reading a FIFO would wait for a writer).
    """
    try:
        st = path.lstat()
    except OSError:
        return "missing on disk"
    if stat.S_ISLNK(st.st_mode):
        target = Path(os.path.realpath(path))
        if not target.exists():
            return f"dangling symlink (points to {os.readlink(path)})"
        resolved = [Path(r).resolve() for r in roots]
        if not any(r == target or r in target.parents for r in resolved):
            return f"symlink pointing outside the collection (to {target}): copy the file in, or prepare the folder it lies in"
        try:
            st = target.stat()
        except OSError:
            return "unreadable symlink target"
    if stat.S_ISDIR(st.st_mode):
        return "a directory named like an audio file"
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        return f"not a regular file ({kind})"
    return None


def hashed_split(track_id: str, shares: Sequence[float], seed: int) -> str:
    """The split of a track added to a prepared collection: a hash of its id against the shares.

    Depends on nothing but (seed, track id, shares): the same song lands in the same split
    whenever and with whatever else it is added, and no other track moves.
    """
    digest = hashlib.sha256(f"{seed}:{track_id}".encode("utf-8", "surrogateescape")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    total = 0.0
    for name, share in zip(SPLITS, shares):
        total += share
        if u < total:
            return name
    return [name for name, share in zip(SPLITS, shares) if share > 0][-1]


def settle_splits(tracks: Sequence[Track], stored: Mapping[str, tuple[str, str]], shares: Sequence[float],
                  seed: int, rehash_new: bool = True) -> tuple[list[Track], int]:
    """The collection's tracks with the splits they keep; returns (tracks, how many were added late).

    ``stored``: {track id: (genre, split)} of the tracks the run already holds. A stored
    track keeps its split forever. A new track of a genre the run already holds gets
    :func:`hashed_split` (with ``rehash_new``; FMA brings its own split and keeps it). A
    genre new to the run keeps the reader's split (stratified: every split gets a track
    when the genre has three).
    """
    known_genres = {genre for genre, _ in stored.values()}
    out, added = [], 0
    for t in tracks:
        if t.track_id in stored:
            split = stored[t.track_id][1]
        elif rehash_new and t.genre in known_genres:
            split = hashed_split(t.track_id, shares, seed)
            added += 1
        else:
            split = t.split
        out.append(t if split == t.split else replace(t, split=split))
    return out, added


def split_drift(per_genre: Mapping[str, Mapping[str, int]], shares: Sequence[float],
                tolerance: float = 0.1) -> list[str]:
    """Genres whose prepared tracks' split shares drifted from the configured ones (added songs)."""
    out = []
    for genre, counts in sorted(per_genre.items()):
        n = sum(counts.values())
        if n == 0:
            continue
        actual = [counts.get(s, 0) / n for s in SPLITS]
        empty = [s for s, a, want in zip(SPLITS, actual, shares) if want > 0 and a == 0 and n >= 3]
        far = n >= 10 and any(abs(a - want) > tolerance for a, want in zip(actual, shares))
        if empty or far:
            have = ", ".join(f"{s} {a:.2f}" for s, a in zip(SPLITS, actual))
            want = ", ".join(f"{w:.2f}" for w in shares)
            out.append(f"genre {genre!r}: split shares {have} (configured {want}); "
                       "prepared tracks never move: prepare a new run to re-split")
    return out


def stratified_split(n: int, shares: tuple[float, float, float], seed: int, key: str) -> list[str]:
    """Seeded split of one genre's n items into training/validation/test by shares.

    Every split with a non-zero share gets at least one item when n allows it.
    """
    counts = [int(round(s * n)) for s in shares]
    for i in (1, 2):
        if shares[i] > 0 and counts[i] == 0 and n >= 3:
            counts[i] = 1
    counts[0] = n - counts[1] - counts[2]
    labels = [s for s, c in zip(SPLITS, counts) for _ in range(c)]
    rng = np.random.default_rng([seed, sum(key.encode())])
    order = rng.permutation(n)
    return [labels[i] for i in np.argsort(order)]


# -- FMA -------------------------------------------------------------------------------


def fma_path(track_id: int) -> str:
    """FMA's layout: track 2 is ``000/000002.mp3``."""
    tid = f"{int(track_id):06d}"
    return f"{tid[:3]}/{tid}.mp3"


def read_fma(audio_dir: str | Path, meta_dir: str | Path, cfg: DatasetConfig) -> Collection:
    """FMA audio plus ``tracks.csv`` (and ``echonest.csv`` when present), FMA's own split."""
    root = Path(audio_dir).resolve()
    meta = Path(meta_dir)
    tracks_csv = meta / "tracks.csv"
    if not root.is_dir():
        raise InputError(f"audio directory not found: {audio_dir}")
    if not tracks_csv.is_file():
        raise InputError(f"FMA metadata not found: {tracks_csv} (pass --metadata DIR holding tracks.csv)")
    try:
        df = pd.read_csv(tracks_csv, index_col=0, header=[0, 1], low_memory=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{tracks_csv}: not FMA's tracks.csv ({exc})") from None
    missing_cols = [name for col, name in FMA_REQUIRED.items() if col not in df.columns]
    if missing_cols:
        raise InputError(f"{tracks_csv} lacks the columns {', '.join(missing_cols)} (FMA's two-row header)")
    out = Collection(root)
    ids = pd.to_numeric(pd.Series(df.index, index=df.index), errors="coerce")
    bad_id = ids.isna() | (ids != ids.round()) | (ids < 0)
    if bad_id.any():
        out.warnings.append(f"{tracks_csv}: {int(bad_id.sum())} rows without an integer track_id skipped")
        keep_id = ~bad_id.to_numpy()
        df, ids = df[keep_id], ids[keep_id]
    dup = ids.duplicated().to_numpy()
    if dup.any():
        out.warnings.append(f"{tracks_csv}: {int(dup.sum())} repeated track_ids skipped (the first row kept)")
        df, ids = df[~dup], ids[~dup]
    allowed = FMA_SUBSETS[: FMA_SUBSETS.index(cfg.subset) + 1] if cfg.subset in FMA_SUBSETS else FMA_SUBSETS
    subset = df[("set", "subset")].astype(str)
    genre = df[("track", "genre_top")]
    keep = (subset.isin(allowed) & genre.notna() & (genre.astype(str).str.strip().str.len() > 0)).to_numpy()
    df, ids = df[keep], ids[keep]
    if df.empty:
        raise InputError(f"{tracks_csv} has no tracks of subset {cfg.subset!r} with a top genre")
    titles = _texts(df, ("track", "title"))
    artists = _texts(df, ("artist", "name"))
    per_genre: dict[str, int] = {}
    rows = zip(ids.astype("int64").tolist(), df[("track", "genre_top")].astype(str).str.strip().tolist(),
               df[("set", "split")].astype(str).tolist(), titles, artists)
    for tid, g, split, title, artist in rows:
        if cfg.max_tracks and per_genre.get(g, 0) >= cfg.max_tracks:
            continue
        per_genre[g] = per_genre.get(g, 0) + 1
        if split not in SPLITS:
            split = "training"
        rel = fma_path(tid)
        t = Track(f"{tid:06d}", g, split, rel, title=title, artist=artist)
        problem = audio_file_problem(root / rel, [root])
        if problem is None:
            out.tracks.append(t)
        elif not os.path.lexists(root / rel):
            out.missing.append((t, f"listed in tracks.csv but missing on disk: {rel}"))
        else:
            out.missing.append((t, problem))
    echonest_csv = meta / "echonest.csv"
    if echonest_csv.is_file():
        try:
            en = read_echonest(echonest_csv)
            wanted = {int(t.track_id) for t in out.tracks}
            for tid, row in en.iterrows():
                if int(tid) in wanted:
                    out.echonest[f"{int(tid):06d}"] = {
                        k: (None if pd.isna(v) else float(v)) for k, v in row.items()
                    }
        except InputError as exc:
            out.warnings.append(f"echonest.csv ignored: {exc}")
    return out


def _texts(df, column: tuple[str, str]) -> list[str]:
    """A metadata text column as strings ('' where missing or absent)."""
    if column not in df.columns:
        return [""] * len(df)
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in df[column].tolist()]
