"""Flask routes for images and audio, registered under the app's ``routes_pathname_prefix``.

Every id in a URL is checked against the store (``store.track``, ``store.extraction``,
``store.concept`` raise NotFound): anything else, including path tricks, is a 404. Files
are only ever read from paths the store holds, inside the run directory or the run's
audio root. Responses carry an ETag and ``Cache-Control`` (extractions never change once
complete; the ETag changes if a run is rebuilt in place).

URLs (relative to the prefix)::

    img/spec/<track_id>.png                          the stored spectrogram
    img/patch/<extraction>/<concept>/<rank>.png      a concept example: the masked crop
    img/context/<extraction>/<concept>/<rank>.png    its source spectrogram, segment outlined
    img/song/<extraction>/<track_id>.png             the song view: concept patches stitched in
                                                     (?concept=<id>: only that concept's)
    audio/<track_id>                                 the song's audio (HTTP Range; transcoded to
                                                     WAV when browsers cannot play the source)
    listen/<extraction>/<concept>/<rank>/<mode>.wav  a concept example as sound (mode solo or
                                                     without; see whypop.listen)
    listen/<extraction>/<concept>/song/<track_id>/<mode>.wav
                                                     the concept's regions in a song, over the
                                                     song's whole analysed window

Concept audio is rendered on the first request and cached as WAV under the extraction;
responses say the gain (``X-Whypop-Gain-Db``) and, when the song's audio was missing and
the sound was rebuilt from the image, ``X-Whypop-Fallback``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
from pathlib import Path
from typing import Callable

from flask import Flask, Response, abort, request, send_file

from whypop.app import images
from whypop.app.data import NPZ_LOCK, AppData
from whypop.app.figures import genre_colors
from whypop.errors import NotFound, WhypopError
from whypop.ids import parse_id
from whypop.extraction_files import load_mask
from whypop.listen import Listener, Rendered
from whypop.sonify import MODES

log = logging.getLogger(__name__)

# Browsers (Chromium, Firefox, Safari) play these natively; anything else is transcoded.
PLAYABLE = {".wav": "audio/wav", ".wave": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
            ".oga": "audio/ogg", ".opus": "audio/ogg", ".flac": "audio/flac", ".m4a": "audio/mp4",
            ".webm": "audio/webm"}
MAX_TRANSCODE_SECONDS = 600  # longer sources are cut: the dashboard explains the first 30 s
IMAGE_MAX_AGE = 24 * 3600  # seconds
AUDIO_MAX_AGE = 3600


def register_routes(server: Flask, prefix: str, data: AppData) -> dict[str, str]:
    """Add the image and audio routes to ``server`` under ``prefix`` (Dash's routes prefix).

    Returns {name: rule}. Endpoint names include the prefix, so two apps can share a server.
    """
    r = _Renderer(data)
    rules: dict[str, tuple[str, Callable]] = {
        "spec": ("img/spec/<track_id>.png", r.spectrogram),
        "patch": ("img/patch/<extraction_id>/<concept_id>/<rank>.png", r.patch),
        "context": ("img/context/<extraction_id>/<concept_id>/<rank>.png", r.context),
        "song": ("img/song/<extraction_id>/<track_id>.png", r.song),
        "audio": ("audio/<track_id>", r.audio),
        "listen_example": ("listen/<extraction_id>/<concept_id>/<rank>/<mode>.wav", r.listen_example),
        "listen_song": ("listen/<extraction_id>/<concept_id>/song/<track_id>/<mode>.wav", r.listen_song),
        "listen_other": ("listen/<path:rest>", _not_found),
        "listen_root": ("listen/", _not_found),
        "img_other": ("img/<path:rest>", _not_found),
        "audio_other": ("audio/<path:rest>", _not_found),
        "img_root": ("img/", _not_found),
        "audio_root": ("audio/", _not_found),
    }
    out = {}
    for name, (rule, view) in rules.items():
        endpoint = f"whypop{prefix}{name}"
        server.add_url_rule(prefix + rule, endpoint=endpoint, view_func=_guard(view), methods=["GET", "HEAD"])
        out[name] = prefix + rule
    return out


def _guard(view: Callable) -> Callable:
    """NotFound (and any other user-caused error) from the store becomes a plain 404."""

    @functools.wraps(view)
    def wrapped(**kwargs):
        try:
            return view(**kwargs)
        except WhypopError as exc:  # NotFound and friends: an id the store does not hold
            log.debug("404 for %s: %s", request.path, exc)
            abort(404)
        except (ValueError, OSError) as exc:  # a file the store points at is missing or unreadable
            log.warning("404 for %s: %s: %s", request.path, type(exc).__name__, exc)
            abort(404)

    return wrapped


def _not_found(rest: str = ""):
    abort(404)


class _Renderer:
    def __init__(self, data: AppData):
        self.data = data
        self.store = data.store
        self.listener = Listener(data.store, npz_lock=NPZ_LOCK, confine=True)

    # -- images -------------------------------------------------------------------------------
    def spectrogram(self, track_id: str) -> Response:
        path = self.store.spectrogram_path(track_id)  # NotFound for unknown or failed tracks
        return _png(path.read_bytes(), self._etag("spec", track_id, path.stat().st_mtime_ns))

    def patch(self, extraction_id: str, concept_id: str, rank: str) -> Response:
        eid, cid, rk = self._patch_ids(extraction_id, concept_id, rank)
        return _png(self._patch_png(eid, cid, rk), self._etag("patch", eid, cid, rk, self.data.view(eid).created))

    def context(self, extraction_id: str, concept_id: str, rank: str) -> Response:
        eid, cid, rk = self._patch_ids(extraction_id, concept_id, rank)
        return _png(self._context_png(eid, cid, rk), self._etag("context", eid, cid, rk, self.data.view(eid).created))

    def song(self, extraction_id: str, track_id: str) -> Response:
        eid = int(self.store.extraction(parse_id(extraction_id, "extraction"))["extraction_id"])
        self.store.track(track_id)
        only = request.args.get("concept")
        cid = None if only is None else int(self.store.concept(eid, parse_id(only, "concept"))["concept_id"])
        return _png(self._song_png(eid, track_id, cid),
                    self._etag("song", eid, track_id, cid, self.data.view(eid).created))

    def _patch_ids(self, extraction_id: str, concept_id: str, rank: str) -> tuple[int, int, int]:
        eid = int(self.store.extraction(parse_id(extraction_id, "extraction"))["extraction_id"])
        cid = int(self.store.concept(eid, parse_id(concept_id, "concept"))["concept_id"])
        rk = parse_id(rank, "rank")
        self.data.example(eid, cid, rk)  # NotFound when the rank does not exist
        return eid, cid, rk

    @functools.lru_cache(maxsize=512)
    def _patch_png(self, eid: int, cid: int, rank: int) -> bytes:
        row = self.data.example(eid, cid, rank)
        stored = Path(self.store.extraction(eid)["path"]) / "patches" / f"{cid}_{rank}.png"
        if stored.is_file():
            return self.store.path(stored.relative_to(self.store.root)).read_bytes()
        spec, mask, box = self._segment(eid, row)
        return images.encode(images.patch_image(spec, mask, box))

    @functools.lru_cache(maxsize=512)
    def _context_png(self, eid: int, cid: int, rank: int) -> bytes:
        row = self.data.example(eid, cid, rank)
        view = self.data.view(eid)
        color = genre_colors(view.genres).get(view.concept(cid).genre, "#ff0000")
        spec, mask, _ = self._segment(eid, row)
        # rendered per request at real scale (200 concepts x 10 examples): fast compression, no upscaling of big images
        return images.context_png(spec, mask, color, scale=images.context_scale(spec.shape))

    @functools.lru_cache(maxsize=256)
    def _song_png(self, eid: int, track_id: str, concept_id: int | None = None) -> bytes:
        spec = self.store.load_spectrogram(track_id)
        masks = []
        for p in self.data.placements(eid, track_id):
            if concept_id is None or p.concept_id == concept_id:
                masks.append(self._mask(eid, p.mask, p.box, spec.shape))
        return images.encode(images.song_image(spec, masks), compress_level=1)

    def _segment(self, eid: int, row: dict):
        spec = self.store.load_spectrogram(row["track_id"])
        box = (int(row["x0"]), int(row["y0"]), int(row["x1"]), int(row["y1"]))
        return spec, self._mask(eid, row["mask"], box, spec.shape), box

    def _mask(self, eid: int, ref: str | None, box: tuple[int, int, int, int], shape: tuple[int, int]):
        if ref:
            with NPZ_LOCK:
                mask = load_mask(self.store, eid, ref)
            if mask.shape == shape:
                return mask
            log.warning("mask %s has shape %s, spectrogram %s: using the box", ref, mask.shape, shape)
        return images.box_mask(shape, box)

    def _etag(self, *parts: object) -> str:
        return hashlib.sha1(repr((str(self.store.root),) + parts).encode()).hexdigest()[:20]

    # -- audio ------------------------------------------------------------------------------
    def audio(self, track_id: str) -> Response:
        path = self._audio_file(track_id)
        mimetype = PLAYABLE.get(path.suffix.lower())
        if mimetype is not None:
            resp = send_file(path, mimetype=mimetype, conditional=True, max_age=AUDIO_MAX_AGE,
                             download_name=f"{track_id}{path.suffix.lower()}")
            resp.headers["Accept-Ranges"] = "bytes"
            return resp
        stat = path.stat()
        data = _transcode(str(path), stat.st_mtime_ns, stat.st_size)
        resp = Response(data, mimetype="audio/wav")
        resp.set_etag(self._etag("audio", track_id, stat.st_mtime_ns, stat.st_size))
        resp.cache_control.public = True
        resp.cache_control.max_age = AUDIO_MAX_AGE
        return resp.make_conditional(request, accept_ranges=True, complete_length=len(data))

    def listen_example(self, extraction_id: str, concept_id: str, rank: str, mode: str) -> Response:
        eid, cid, rk = self._patch_ids(extraction_id, concept_id, rank)
        if mode not in MODES:
            raise NotFound(f"unknown mode {mode!r}")
        return self._wav(self.listener.example(eid, cid, rk, mode))

    def listen_song(self, extraction_id: str, concept_id: str, track_id: str, mode: str) -> Response:
        eid = int(self.store.extraction(parse_id(extraction_id, "extraction"))["extraction_id"])
        cid = int(self.store.concept(eid, parse_id(concept_id, "concept"))["concept_id"])
        self.store.track(track_id)
        if mode not in MODES:
            raise NotFound(f"unknown mode {mode!r}")
        return self._wav(self.listener.song(eid, cid, track_id, mode))

    def _wav(self, rendered: Rendered) -> Response:
        path = rendered.path
        if path.is_relative_to(self.store.root):  # cached in the run: served from the file (Range, ETag)
            resp = send_file(path, mimetype="audio/wav", conditional=True, max_age=AUDIO_MAX_AGE)
        else:  # a run we cannot write to: a one-off render
            data = path.read_bytes()
            path.unlink(missing_ok=True)
            resp = Response(data, mimetype="audio/wav")
            resp.cache_control.max_age = AUDIO_MAX_AGE
            resp = resp.make_conditional(request, accept_ranges=True, complete_length=len(data))
        resp.headers["Accept-Ranges"] = "bytes"
        resp.headers["X-Whypop-Gain-Db"] = f"{rendered.info.gain_db:.2f}"
        if rendered.info.fallback:
            resp.headers["X-Whypop-Fallback"] = rendered.info.fallback.split(":")[0]
        return resp

    def _audio_file(self, track_id: str) -> Path:
        """The track's audio file, only if it lies inside the run or its audio root."""
        path = self.store.audio_path(track_id).resolve()  # NotFound for unknown ids
        roots = [self.store.root]
        if self.store.audio_root is not None:
            roots.append(self.store.audio_root.resolve())
        if not any(path == root or root in path.parents for root in roots):
            raise NotFound(f"audio of {track_id!r} lies outside the run and its audio root")
        if not path.is_file():
            raise NotFound(f"audio file of {track_id!r} is missing")
        return path


@functools.lru_cache(maxsize=16)
def _transcode(path: str, mtime_ns: int, size: int) -> bytes:
    """Decode with soundfile and write 16-bit WAV (keyed by mtime and size so edits show)."""
    import soundfile as sf

    with sf.SoundFile(path) as fh:
        frames = min(fh.frames if fh.frames > 0 else -1, int(MAX_TRANSCODE_SECONDS * fh.samplerate)) or -1
        data = fh.read(frames=frames, dtype="int16", always_2d=True)
        rate = fh.samplerate
    buf = io.BytesIO()
    sf.write(buf, data, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _png(data: bytes, etag: str) -> Response:
    resp = Response(data, mimetype="image/png")
    resp.set_etag(etag)
    resp.cache_control.public = True
    resp.cache_control.max_age = IMAGE_MAX_AGE
    return resp.make_conditional(request)
