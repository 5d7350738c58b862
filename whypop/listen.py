"""A run's concept regions as sound: which mask, which audio, and the cache on disk.

Two kinds of clip (:mod:`whypop.sonify` renders them):

- an *example*: a concept's patch of rank ``k`` (its mask on its song's image), as
  ``solo`` (the region with faded context) or ``without`` (the same span, minus it);
- a concept *within a song*: every patch of the concept in that song together, over the
  whole analysed window from 0 s, so a player's time stays the song's time. In one of the
  concept's discovery songs the patches are the stored ones (:meth:`Listener.song`); in
  any other song, or an uploaded one, they are the segments the per-song explanation
  placed the concept on (:meth:`Listener.placed`; the caller supplies that mask).

The audio is the song's own file (decoded at its own rate). When it is missing, a
Griffin-Lim stand-in is made from the stored spectrogram image and the clip's
``fallback`` says so.

Rendered clips are cached as 16-bit WAV under the extraction
(``extractions/<id>/listen/<settings>/``), each with a JSON sidecar holding its
:class:`whypop.sonify.ClipInfo` and the signature of the audio it came from (file size
and mtime, or the image's for a fallback): a clip whose source changed is rendered again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np

from whypop.decoding import decode
from whypop.config import AudioConfig
from whypop.datasets import audio_file_problem
from whypop.geometry import mask_region
from whypop.errors import InputError, NotFound
from whypop.results import load_mask
from whypop.sonify import GRIFFIN_LIM, MODES, Clip, ClipInfo, ListenSettings, image_to_samples, render
from whypop.store import RunStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    """A clip on disk and what it is."""

    path: Path
    info: ClipInfo
    extraction_id: int
    concept_id: int
    concept: str
    genre: str
    track_id: str
    rank: int | None  # None: the concept's regions within a song
    cached: bool  # True when it was read from the cache rather than rendered now

    def to_dict(self) -> dict:
        return {"extraction_id": self.extraction_id, "concept_id": self.concept_id, "concept": self.concept,
                "genre": self.genre, "track_id": self.track_id, "rank": self.rank, **self.info.to_dict(),
                "path": str(self.path), "cached": self.cached}


@dataclass(frozen=True)
class _Source:
    samples: np.ndarray
    sample_rate: int
    signature: str
    fallback: str | None


class Listener:
    """Renders and caches a run's concept clips (thread-safe; one per store is enough).

    ``npz_lock`` guards mask reads (the app passes its lock: ``np.load`` is not
    thread-safe); ``confine`` refuses audio outside the run and its audio root (the web
    routes' rule), using the image fallback for such files instead.
    """

    def __init__(self, store: RunStore, settings: ListenSettings = ListenSettings(),
                 npz_lock: ContextManager | None = None, confine: bool = False, cache: bool = True):
        self.store = store
        self.settings = settings
        self._npz_lock = npz_lock if npz_lock is not None else contextlib.nullcontext()
        self.confine = confine
        self.cache = cache
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @functools.cached_property
    def audio(self) -> AudioConfig:
        cfg = self.store.stored_config()
        return cfg.audio if cfg is not None else AudioConfig()

    # -- public -------------------------------------------------------------------------------
    def example(self, extraction_id: int | None, concept_id: int, rank: int, mode: str) -> Rendered:
        """A concept example's clip; NotFound for unknown ids."""
        eid, concept = self._concept(extraction_id, concept_id)
        _check_mode(mode)
        rows = [p for p in self.store.patches(eid, concept_id=concept["concept_id"]) if int(p["rank"]) == int(rank)]
        if not rows:
            raise NotFound(f"concept {concept_id} of extraction {eid} has no example of rank {rank}"
                           f" (ranks start at 0)")
        row = rows[0]
        track_id = str(row["track_id"])
        name = f"example-{int(concept['concept_id'])}-{int(rank)}-{mode}"
        return self._cached(eid, concept, track_id, int(rank), name,
                            lambda: self.render_rows(eid, track_id, [row], mode, whole=False), self._signature(track_id))

    def song(self, extraction_id: int | None, concept_id: int, track_id: str, mode: str) -> Rendered:
        """Every region of the concept in one song, over the song's whole analysed window."""
        eid, concept = self._concept(extraction_id, concept_id)
        _check_mode(mode)
        self.store.track(track_id)  # NotFound for unknown tracks
        rows = self.store.patches(eid, concept_id=concept["concept_id"], track_id=track_id)
        if not rows:
            songs = sorted({str(p["track_id"]) for p in self.store.patches(eid, concept_id=concept["concept_id"])})
            raise NotFound(f"{concept['name']} (concept {concept['concept_id']}) has no region in song {track_id!r} "
                           f"in extraction {eid}; its regions lie in: {', '.join(songs) or 'no song'}")
        digest = hashlib.sha1(track_id.encode()).hexdigest()[:16]
        name = f"song-{int(concept['concept_id'])}-{digest}-{mode}"
        return self._cached(eid, concept, track_id, None, name,
                            lambda: self.render_rows(eid, track_id, rows, mode, whole=True), self._signature(track_id))

    def placed(self, extraction_id: int | None, concept_id: int, song: str, mode: str,
               make_mask: Callable[[], np.ndarray], audio_path: Path | None = None) -> Rendered:
        """The concept's placed regions in a song over its whole analysed window (cached like :meth:`song`).

        ``song`` is a track id of the run, or (with ``audio_path``, the file to render
        from) an uploaded song's id. ``make_mask`` returns the union of the segments the
        concept was placed on (an (H, W) bool image mask); it is called only when the clip
        is not cached yet, and an empty mask means the concept is not placed there.
        """
        eid, concept = self._concept(extraction_id, concept_id)
        _check_mode(mode)
        if audio_path is None:
            self.store.track(song)  # NotFound for unknown tracks
        digest = hashlib.sha1(song.encode()).hexdigest()[:16]
        name = f"placed-{int(concept['concept_id'])}-{digest}-{mode}"

        def clip() -> Clip:
            mask = np.asarray(make_mask(), dtype=bool)
            if mask.ndim == 3:
                mask = mask.any(axis=0)
            if not mask.any():
                raise NotFound(f"{concept['name']} (concept {concept['concept_id']}) is not placed in song {song!r} "
                               f"by extraction {eid}'s explanation: none of its segments matches the concept")
            return self.render_mask(song, mask, mode, whole=True, audio_path=audio_path)

        return self._cached(eid, concept, song, None, name, clip, self._signature(song, audio_path))

    def discovery_songs(self, extraction_id: int | None) -> set[str]:
        """Every discovery song of an extraction (any genre): their concept regions are stored patches."""
        ex = self.store.extraction(extraction_id)
        return {str(t) for g in (ex.get("summary") or {}).get("genres", {}).values() for t in g.get("discovery", ())}

    def render_rows(self, eid: int, track_id: str, rows: list[dict], mode: str, whole: bool) -> Clip:
        """Render (no cache) the union of these patch rows' masks in a track."""
        return self.render_mask(track_id, self._union_mask(eid, rows), mode, whole)

    def render_mask(self, track_id: str, mask: np.ndarray, mode: str, whole: bool = True,
                    audio_path: Path | None = None) -> Clip:
        """Render (no cache) any image mask of a track (or of the song in ``audio_path``)."""
        start, seconds = 0.0, self.audio.duration
        if not whole:  # an example needs the song only around its clip (plus a window)
            region = mask_region(mask, self.audio)
            if region is None:
                raise InputError("the mask is empty")
            margin = self.settings.context_s + 2 * self.settings.window_s + 0.05
            start, seconds = max(0.0, region.start_s - margin), min(seconds, region.end_s + margin)
        source = self._source(track_id, seconds, start, audio_path)
        return render(source.samples, source.sample_rate, mask, self.audio, mode, self.settings, whole=whole,
                      fallback=source.fallback)

    # -- internals ----------------------------------------------------------------------------
    def _concept(self, extraction_id: int | None, concept_id: int) -> tuple[int, dict]:
        ex = self.store.extraction(extraction_id)
        eid = int(ex["extraction_id"])
        return eid, self.store.concept(eid, concept_id)

    def _cached(self, eid: int, concept: dict, track_id: str, rank: int | None, name: str,
                make_clip: Callable[[], Clip], signature: str) -> Rendered:
        ex_dir = Path(self.store.extraction(eid)["path"]).relative_to(self.store.root)
        rel = ex_dir / "listen" / self.settings.key() / f"{name}.wav"
        meta = dict(extraction_id=eid, concept_id=int(concept["concept_id"]), concept=str(concept["name"]),
                    genre=str(concept["genre"]), track_id=track_id, rank=rank)
        wav, side = self.store.root / rel, self.store.root / rel.with_suffix(".json")
        with self._lock(str(rel)):
            if self.cache:
                hit = _read_sidecar(side, signature)
                if hit is not None and wav.is_file():
                    return Rendered(self.store.path(rel), hit, cached=True, **meta)
            clip = make_clip()
            data = clip.wav_bytes()
            info = clip.info()
            if self.cache:
                try:
                    path = self.store.write_bytes_atomic(str(rel), data)
                    self.store.write_bytes_atomic(str(rel.with_suffix(".json")), json.dumps(
                        {"signature": signature, "info": info.to_dict()}, sort_keys=True).encode())
                    return Rendered(path, info, cached=False, **meta)
                except OSError as exc:  # a read-only run: render to a temporary file instead
                    log.warning("cannot cache %s in the run (%s): not cached", rel, exc)
            import tempfile

            fd, tmp = tempfile.mkstemp(prefix="whypop-listen-", suffix=".wav")
            with open(fd, "wb") as fh:
                fh.write(data)
            return Rendered(Path(tmp), info, cached=False, **meta)

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _union_mask(self, eid: int, rows: list[dict]) -> np.ndarray:
        size = self.audio.image_size
        mask = np.zeros((size, size), dtype=bool)
        for row in rows:
            part = None
            if row.get("mask"):
                with self._npz_lock:
                    part = load_mask(self.store, eid, row["mask"])
                if part.shape != mask.shape:
                    log.warning("mask %s has shape %s, image %s: using its box", row["mask"], part.shape, mask.shape)
                    part = None
            if part is None:
                part = np.zeros_like(mask)
                part[int(row["y0"]) : int(row["y1"]), int(row["x0"]) : int(row["x1"])] = True
            mask |= part
        if not mask.any():
            raise NotFound("the concept's region is empty")
        return mask

    def _audio_path(self, track_id: str) -> tuple[Path | None, str]:
        return audio_file(self.store, track_id, self.confine)

    def _signature(self, track_id: str, audio_path: Path | None = None) -> str:
        path, _ = (audio_path, "") if audio_path is not None else self._audio_path(track_id)
        if path is not None:
            st = path.stat()
            return f"audio:{st.st_size}:{st.st_mtime_ns}"
        st = self.store.spectrogram_path(track_id).stat()
        return f"image:{st.st_size}:{st.st_mtime_ns}"

    def _source(self, track_id: str, seconds: float | None = None, start: float = 0.0,
                audio_path: Path | None = None) -> _Source:
        """The track's samples from 0 s (right from ``start`` to ``seconds`` at least, or the image's window)."""
        path, why = (audio_path, "") if audio_path is not None else self._audio_path(track_id)
        if path is not None:
            try:
                d = decode(path, max_seconds=min(seconds or self.audio.duration, self.audio.duration))
                return _Source(d.samples, d.sample_rate, self._signature(track_id, audio_path), None)
            except InputError as exc:
                if audio_path is not None:  # an uploaded song has no stored image to fall back on
                    raise
                why = str(exc)
        image = self.store.load_spectrogram(track_id)
        end = min(seconds or self.audio.duration, self.audio.duration)
        samples = _griffin_lim(image.tobytes(), image.shape, self.audio, self.settings.griffin_lim_iters,
                               round(start, 2), round(end, 2))
        note = (f"{GRIFFIN_LIM}: the song's audio is unavailable ({why}); this sound is rebuilt from the spectrogram "
                f"image (estimated phase, mel resolution) and sounds worse than the song")
        log.warning("%s: %s", track_id, note)
        return _Source(samples, self.audio.sample_rate, self._signature(track_id), note)


def audio_file(store: RunStore, track_id: str, confine: bool = False) -> tuple[Path | None, str]:
    """A track's audio file, or (None, why not): a clip of a track without one is rebuilt from its image.

    ``confine``: only files inside the run or its audio root count (the web routes' rule).
    """
    try:
        stored = store.audio_path(track_id)
    except NotFound as exc:
        return None, str(exc)
    path = stored.resolve()
    if confine:
        roots = [store.root] + ([store.audio_root.resolve()] if store.audio_root else [])
        # the audio route's policy (and preparation's): no FIFOs, devices or symlinks out of the roots
        problem = audio_file_problem(stored, roots)
        if problem is not None:
            return None, f"its audio file is {problem}" if problem.startswith(("a ", "not ")) else problem
        if not any(path == r or r in path.parents for r in roots):
            return None, "it lies outside the run and its audio root"
    if not path.is_file():
        return None, f"file missing: {path.name}"
    return path, ""


@functools.lru_cache(maxsize=4)
def _griffin_lim(image: bytes, shape: tuple[int, int], audio: AudioConfig, n_iter: int, start: float,
                 end: float) -> np.ndarray:
    return image_to_samples(np.frombuffer(image, dtype=np.uint8).reshape(shape), audio, n_iter=n_iter,
                            start_s=start, end_s=end)


def _read_sidecar(path: Path, signature: str) -> ClipInfo | None:
    try:
        d = json.loads(path.read_text())
        if d.get("signature") != signature:
            return None
        return ClipInfo.from_dict(d["info"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise InputError(f"mode {mode!r}: allowed are {', '.join(MODES)}")
