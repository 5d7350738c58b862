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
                                                     song's whole analysed window: its stored
                                                     patches in a discovery song, else where the
                                                     song's explanation places the concept
    listen/<extraction>/<concept>/upload/<sha256>/<mode>.wav
                                                     the same in an uploaded song (once explained)

Concept audio is rendered on the first request and cached as WAV under the extraction;
responses say the gain (``X-Whypop-Gain-Db``) and, when the song's audio was missing and
the sound was rebuilt from the image, ``X-Whypop-Fallback``.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import logging
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from flask import Flask, Response, abort, request, send_file
from werkzeug.http import parse_range_header

from whypop.app import images
from whypop.app.data import NPZ_LOCK, AppData
from whypop.app.figures import genre_colors
from whypop.datasets import audio_file_problem
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
IMAGE_MAX_AGE = 24 * 3600  # seconds
AUDIO_MAX_AGE = 3600


def register_routes(server: Flask, prefix: str, data: AppData, explain_cache: bool = False) -> dict[str, str]:
    """Add the image and audio routes to ``server`` under ``prefix`` (Dash's routes prefix).

    Returns {name: rule}. Endpoint names include the prefix, so two apps can share a server.
    ``explain_cache``: whether explaining a song (for its concept audio) may cache the
    extraction's concept bank in the run (as panel 5's explanations do).
    """
    r = _Renderer(data, explain_cache)
    rules: dict[str, tuple[str, Callable]] = {
        "spec": ("img/spec/<track_id>.png", r.spectrogram),
        "patch": ("img/patch/<extraction_id>/<concept_id>/<rank>.png", r.patch),
        "context": ("img/context/<extraction_id>/<concept_id>/<rank>.png", r.context),
        "song": ("img/song/<extraction_id>/<track_id>.png", r.song),
        "audio": ("audio/<track_id>", r.audio),
        "listen_example": ("listen/<extraction_id>/<concept_id>/<rank>/<mode>.wav", r.listen_example),
        "listen_song": ("listen/<extraction_id>/<concept_id>/song/<track_id>/<mode>.wav", r.listen_song),
        "listen_upload": ("listen/<extraction_id>/<concept_id>/upload/<digest>/<mode>.wav", r.listen_upload),
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
    def __init__(self, data: AppData, explain_cache: bool = False):
        self.data = data
        self.explain_cache = explain_cache
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
        wav = WavStream(path, max_seconds=float(self.data.audio.duration))
        etag = self._etag("audio", track_id, stat.st_mtime_ns, stat.st_size, wav.max_seconds)
        return wav.response(etag)

    def listen_example(self, extraction_id: str, concept_id: str, rank: str, mode: str) -> Response:
        eid, cid, rk = self._patch_ids(extraction_id, concept_id, rank)
        if mode not in MODES:
            raise NotFound(f"unknown mode {mode!r}")
        return self._wav(self.listener.example(eid, cid, rk, mode))

    def listen_song(self, extraction_id: str, concept_id: str, track_id: str, mode: str) -> Response:
        eid = int(self.store.extraction(parse_id(extraction_id, "extraction"))["extraction_id"])
        cid = int(self.store.concept(eid, parse_id(concept_id, "concept"))["concept_id"])
        if self.store.track(track_id).status != "ok":  # NotFound for unknown ids
            raise NotFound(f"track {track_id!r} was not prepared: its audio is not served")
        if mode not in MODES:
            raise NotFound(f"unknown mode {mode!r}")
        if track_id in self.listener.discovery_songs(eid):  # the stored patches, as panel 5 draws them
            return self._wav(self.listener.song(eid, cid, track_id, mode))
        return self._wav(self.listener.placed(eid, cid, track_id, mode, lambda: self._track_mask(eid, cid, track_id)))

    def listen_upload(self, extraction_id: str, concept_id: str, digest: str, mode: str) -> Response:
        import pipelines.explain as pe

        eid = int(self.store.extraction(parse_id(extraction_id, "extraction"))["extraction_id"])
        cid = int(self.store.concept(eid, parse_id(concept_id, "concept"))["concept_id"])
        audio = pe.upload_audio(self.store, digest)  # NotFound for a bad or unknown id
        if mode not in MODES:
            raise NotFound(f"unknown mode {mode!r}")
        return self._wav(self.listener.placed(eid, cid, digest, mode,
                                              lambda: pe.upload_placed_mask(self.store, digest, eid, cid),
                                              audio_path=audio))

    def _track_mask(self, eid: int, cid: int, track_id: str):
        """Where the song's explanation (panel 5's, this process; else made now) places the concept."""
        import pipelines.explain as pe
        from whypop.app.explain import compute
        from whypop.progress import null_progress

        e = compute(str(self.store.root), {"kind": "track", "id": track_id, "extraction": eid}, self.explain_cache,
                    null_progress)
        return pe.placed_mask(self.store, eid, self.store.load_spectrogram(track_id), e, cid)

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
        """The audio file of a prepared track, only if it lies inside the run or its audio root.

        The same policy as preparation (:func:`whypop.datasets.audio_file_problem`): symlinks
        are followed, and the file they reach must be a regular file inside those roots.
        """
        track = self.store.track(track_id)  # NotFound for unknown ids
        if track.status != "ok":
            raise NotFound(f"track {track_id!r} was not prepared ({track.status}): its audio is not served")
        path = self.store.audio_path(track_id)
        roots = [self.store.root]
        if self.store.audio_root is not None:
            roots.append(self.store.audio_root.resolve())
        problem = audio_file_problem(path, roots)
        resolved = path.resolve()
        if problem is None and not any(resolved == root or root in resolved.parents for root in roots):
            problem = "lies outside the run and its audio root"  # a stored absolute source elsewhere
        if problem is not None:
            raise NotFound(f"audio of {track_id!r}: {problem}")
        return resolved


class WavStream:
    """A source browsers cannot play (.au, .aiff), served as 16-bit WAV without decoding it whole.

    The WAV covers the first ``max_seconds`` (the clip the dashboard explains), at the
    source's rate, mono or stereo (more channels are averaged to mono). Its size is known
    from the source's header, so a Range request seeks in the source and decodes only the
    frames whose bytes it serves; a full request streams in blocks. Memory per request is
    one block, whatever the length, rate and channel count of the source.
    """

    HEADER = 44
    BLOCK = 1 << 16  # frames per read when streaming

    def __init__(self, path: Path, max_seconds: float):
        import soundfile as sf

        self.path = path
        self.max_seconds = max_seconds
        with sf.SoundFile(str(path)) as fh:
            self.rate = int(fh.samplerate)
            self.source_channels = int(fh.channels)
            self.seekable = fh.seekable() and fh.frames > 0
            self.frames = min(fh.frames, int(max_seconds * self.rate)) if fh.frames > 0 else 0
        self.channels = self.source_channels if self.source_channels <= 2 else 1
        if not self.seekable:  # no frame count in the header: decode the (bounded) clip once
            self._whole = self._decode_bounded()
            self.frames = len(self._whole)
        self.frame_bytes = 2 * self.channels
        self.length = self.HEADER + self.frames * self.frame_bytes

    def header(self) -> bytes:
        data = self.frames * self.frame_bytes
        return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
                + struct.pack("<IHHIIHH", 16, 1, self.channels, self.rate, self.rate * self.frame_bytes,
                              self.frame_bytes, 16)
                + b"data" + struct.pack("<I", data))

    def _convert(self, block: np.ndarray) -> bytes:
        if self.source_channels > 2:
            block = block.astype(np.int32).mean(axis=1, keepdims=True).astype(np.int16)
        return np.ascontiguousarray(block, dtype="<i2").tobytes()

    def _decode_bounded(self) -> np.ndarray:
        import soundfile as sf

        with sf.SoundFile(str(self.path)) as fh:
            return fh.read(frames=int(self.max_seconds * fh.samplerate), dtype="int16", always_2d=True)

    def read(self, start: int, stop: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``stop`` (exclusive) of the WAV, in blocks."""
        import soundfile as sf

        if start < self.HEADER:
            yield self.header()[start:min(stop, self.HEADER)]
            start = self.HEADER
        if stop <= start:
            return
        first = (start - self.HEADER) // self.frame_bytes
        last = min(self.frames, -(-(stop - self.HEADER) // self.frame_bytes))
        skip = (start - self.HEADER) - first * self.frame_bytes
        remaining = stop - start
        if not self.seekable:
            yield self._convert(self._whole[first:last])[skip:skip + remaining]
            return
        with sf.SoundFile(str(self.path)) as fh:
            fh.seek(first)
            pos = first
            while pos < last and remaining > 0:
                block = fh.read(frames=min(self.BLOCK, last - pos), dtype="int16", always_2d=True)
                if not len(block):
                    break
                pos += len(block)
                chunk = self._convert(block)[skip:skip + remaining]
                skip = 0
                remaining -= len(chunk)
                yield chunk
        if remaining > 0:  # the source was shorter than its header said: pad with silence
            yield bytes(remaining)

    def response(self, etag: str) -> Response:
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{etag}"', "Cache-Control": f"public, max-age={AUDIO_MAX_AGE}"}
        if request.if_none_match.contains(etag):
            return Response(status=304, headers=headers)
        rng = parse_range_header(request.headers.get("Range"))
        if rng is not None and request.headers.get("If-Range") and request.if_range.etag != etag:
            rng = None  # If-Range names another version: send it all
        head = request.method == "HEAD"
        if rng is None:
            return Response(iter(()) if head else self.read(0, self.length), 200, mimetype="audio/wav",
                            direct_passthrough=True, headers={**headers, "Content-Length": str(self.length)})
        span = rng.range_for_length(self.length)
        if span is None:
            return Response(status=416, headers={**headers, "Content-Range": f"bytes */{self.length}"})
        start, stop = span
        return Response(iter(()) if head else self.read(start, stop), 206, mimetype="audio/wav",
                        direct_passthrough=True, headers={**headers, "Content-Length": str(stop - start),
                                                          "Content-Range": f"bytes {start}-{stop - 1}/{self.length}"})


def _png(data: bytes, etag: str) -> Response:
    resp = Response(data, mimetype="image/png")
    resp.set_etag(etag)
    resp.cache_control.public = True
    resp.cache_control.max_age = IMAGE_MAX_AGE
    return resp.make_conditional(request)
