"""Stage 1, prepare: audio files -> 224x224 uint8 spectrograms (+ features) in the run store.

Resumable: tracks already prepared (status ok, PNG on disk) are skipped. Bad files are
recorded against their track with a one-line reason and the batch goes on. Work runs in
``workers`` processes; only this process writes to the store.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from whypop import audio, decoding, jitcache
from whypop.collection import summarize
from whypop.config import Config, Layout, choices
from whypop.datasets import Collection, read_fma, read_folders, settle_splits
from whypop.demo import generate_demo
from whypop.env import single_threaded
from whypop.errors import ConfigError, InputError
from whypop.features import compute_audio_features
from whypop.processes import exit_with_parent
from whypop.progress import Progress, ProgressEvent, null_progress
from whypop.store import RunStore
from whypop.tracks import PlantedRegion, Track
from whypop.workers import Crashed, imap_unordered

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareCounts:
    """What one preparation did: ``new``/``failed``/``skipped`` now; ``ok``/``failed_total`` in the run."""

    new: int
    failed: int
    skipped: int
    ok: int
    failed_total: int
    collection: dict | None = None  # whypop.collection.CollectionSummary.to_dict() of the prepared tracks


@dataclass(frozen=True)
class PrepareResult:
    track_id: str
    png: bytes | None
    error: str | None
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    features: dict | None = None
    seconds: float = 0.0


def _init_worker() -> None:
    """One thread per worker process (the processes are the parallelism); a worker ends with the main process."""
    exit_with_parent()
    single_threaded()


def prepare_one(track_id: str, path: str, cfg: Config) -> PrepareResult:
    """Decode one file and build its spectrogram and features; errors become a reason."""
    start = time.perf_counter()
    try:
        decoded = decoding.decode(path, max_seconds=cfg.audio.duration)
        if decoded.duration < 0.05:
            raise InputError(f"audio too short to use ({decoded.duration * 1000:.0f} ms)")
        image = audio.spectrogram_from_samples(decoded.samples, decoded.sample_rate, cfg.audio)
        features = _features(track_id, decoded) if cfg.dataset.audio_features else None
        return PrepareResult(
            track_id, audio.encode_png(image), None, decoded.duration, decoded.sample_rate,
            decoded.channels, features, time.perf_counter() - start,
        )
    except InputError as exc:
        return PrepareResult(track_id, None, str(exc), seconds=time.perf_counter() - start)
    except Exception as exc:  # a bug or a library failure on one file must not stop the batch
        log.exception("preparing %s failed", track_id)
        return PrepareResult(track_id, None, f"unexpected error: {type(exc).__name__}: {exc}"[:300])


def _features(track_id: str, decoded) -> dict | None:
    """The audio descriptors; a failure here costs the features, not the track."""
    try:
        return compute_audio_features(decoded.samples, decoded.sample_rate)
    except Exception:  # the spectrogram is fine: keep the track, log why features are missing
        log.exception("audio features of %s failed; the track is kept without them", track_id)
        return None


def collect(
    cfg: Config, store: RunStore, audio_dir: str | Path | None, layout: str, metadata: str | Path | None,
    demo: bool = False, progress: Progress = null_progress,
) -> Collection:
    """Find the tracks of a collection (generating the demo first when asked)."""
    if demo:
        return generate_demo_collection(cfg, store, progress)
    if audio_dir is None:
        raise InputError("give AUDIO_DIR (or --demo)")
    if layout == "fma":
        if metadata is None:
            raise InputError("the FMA layout needs --metadata DIR (the folder holding tracks.csv)")
        return read_fma(audio_dir, metadata, cfg.dataset)
    if layout == "folders":
        return read_folders(audio_dir, cfg.dataset)
    raise InputError(f"unknown layout {layout!r}: allowed are {', '.join(choices(Layout))}")


def generate_demo_collection(cfg: Config, store: RunStore, progress: Progress = null_progress) -> Collection:
    """Write the demo clips under ``<run>/audio`` and register their planted regions."""
    d = cfg.demo
    root = store.root / "audio"
    try:
        clips = generate_demo(
            root, genres=d.genres, clips_per_genre=d.clips_per_genre, clip_seconds=d.clip_seconds,
            sample_rate=d.sample_rate, seed=d.seed,
            artefact_genre=None if d.artefact_genre < 0 else d.artefact_genre,
            artefact_share=d.artefact_share, artefact_signature_db=d.artefact_signature_db, split=d.split,
            progress=progress,
        )
    except ValueError as exc:  # the generator names the bad setting
        raise ConfigError(f"demo settings: {exc}") from None
    out = Collection(root.resolve())
    regions = []
    for clip in clips:
        out.tracks.append(Track(clip.track_id, clip.genre, clip.split, str(Path(clip.path).resolve().relative_to(out.audio_root)), title=clip.track_id))
        regions.extend(PlantedRegion(clip.track_id, b.kind, b.label, b.t0, b.t1, b.f0, b.f1) for b in clip.boxes)
    store.upsert_tracks(out.tracks)
    store.set_planted(regions)
    return out


def run(
    cfg: Config,
    store: RunStore,
    audio_dir: str | Path | None = None,
    layout: str = "folders",
    metadata: str | Path | None = None,
    workers: int | None = None,
    demo: bool = False,
    progress: Progress = null_progress,
    retry_failed: bool = False,
) -> PrepareCounts:
    """Prepare every track of a collection; returns the counts of this pass and of the run, and the
    collection's summary (``collection``: CollectionSummary.to_dict(), its warnings name fixes)."""
    if cfg.audio.fmax == "auto" and not demo:  # the mel range follows the sources: read their rates first
        collection = collect(cfg, store, audio_dir, layout, metadata, progress=progress)
        cfg = resolve_fmax(cfg, collection)
        _check_same_settings(cfg, store, ("audio",))
    else:
        _check_same_settings(cfg, store, ("audio", "demo") if demo else ("audio",))
        collection = collect(cfg, store, audio_dir, layout, metadata, demo=demo, progress=progress)
    previous_root = store.audio_root
    if previous_root is not None and previous_root != collection.audio_root:
        raise InputError(
            f"run {store.root} was prepared from {previous_root}, not {collection.audio_root}: use a new --run"
        )
    stored = {t.track_id: (t.genre, t.split) for t in store.tracks()}
    collection.tracks, added = settle_splits(collection.tracks, stored, cfg.dataset.split, cfg.dataset.seed,
                                             rehash_new=layout == "folders" and not demo)
    if added:
        log.info("%d tracks added to genres the run already holds: split by a hash of their id", added)
    store.set_audio_root(collection.audio_root)
    store.set_meta("layout", "demo" if demo else layout)
    store.set_meta("config", cfg.to_dict())
    store.set_meta("prepare_warnings", collection.warnings)
    for w in collection.warnings:
        log.warning(w)
    if not collection.tracks and not collection.missing:
        raise InputError(f"no audio files found in {collection.audio_root}")
    store.upsert_tracks(collection.tracks)
    for t, reason in collection.missing:
        store.record_missing(t.track_id, t.genre, t.split, t.source, reason)
    for tid, values in collection.echonest.items():
        store.set_features(tid, "echonest", values)

    done_ids = {t.track_id for t in store.tracks(status="ok") if t.spectrogram and store.path(t.spectrogram).is_file()}
    if not retry_failed:
        done_ids |= {t.track_id for t in store.tracks(status="failed")}
    todo = [t for t in collection.tracks if t.track_id not in done_ids]
    new = failed = 0
    total = len(todo)
    progress(ProgressEvent("prepare", "clips", 0, total))
    for i, result in enumerate(_map(todo, collection.audio_root, cfg, workers), 1):
        _record(store, result)
        if result.error is None:
            new += 1
        else:
            failed += 1
        progress(ProgressEvent("prepare", "clips", i, total))
    counts = PrepareCounts(new=new, failed=failed, skipped=len(collection.tracks) - len(todo),
                           ok=len(store.tracks(status="ok")), failed_total=len(store.tracks(status="failed")))
    if counts.ok == 0:
        raise InputError(f"nothing usable in {collection.audio_root}: every track failed (see `whypop status`)")
    summary = summarize(store.tracks(status="ok"), cfg.audio, cfg.dataset.split, fixed_split=demo or layout == "fma")
    store.set_meta("collection", summary.to_dict())
    for w in summary.warnings:
        log.info("collection: %s", w)
    return dataclasses.replace(counts, collection=summary.to_dict())


def resolve_fmax(cfg: Config, collection: Collection) -> Config:
    """``audio.fmax = "auto"`` -> the common Nyquist of the sources (the lowest), in Hz, at most the target's."""
    import soundfile as sf

    rates = []
    for t in collection.tracks:
        try:
            rates.append(int(sf.info(str(collection.audio_root / t.source)).samplerate))
        except Exception:  # unreadable: preparation records why
            continue
    top = cfg.audio.sample_rate / 2
    fmax = min([top] + [r / 2 for r in rates])
    return cfg.replace(audio={"fmax": float(fmax)})


def _check_same_settings(cfg: Config, store: RunStore, sections: tuple[str, ...]) -> None:
    """Refuse to mix spectrograms made with different audio (or demo) settings in one run."""
    stored = store.get_meta("config") or {}
    current = cfg.to_dict()
    changed = [
        f"{section}.{key}={stored[section][key]!r} (now {value!r})"
        for section in sections if isinstance(stored.get(section), dict)
        for key, value in current[section].items()
        if key in stored[section] and _plain(stored[section][key]) != _plain(value)
    ]
    if changed and store.tracks(status="ok"):
        raise InputError(
            f"run {store.root} was prepared with {', '.join(changed)}: its spectrograms would mix "
            "settings; use a new --run, or the run's own settings"
        )


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _map(todo: list[Track], root: Path, cfg: Config, workers: int | None) -> Iterable[PrepareResult]:
    workers = max(1, workers or os.cpu_count() or 1)
    jobs = [(t.track_id, str(root / t.source), cfg) for t in todo]
    if not jobs:
        return
    # numba's cached functions are compiled (once, alone) and checked before any worker starts:
    # workers compiling at once can corrupt the cache, and a damaged cache crashes every track
    jitcache.ensure_usable()
    if workers == 1 or len(jobs) < 4:  # in this process, leaving its thread settings alone
        for job in jobs:
            yield prepare_one(*job)
        return
    # a worker that dies (segfault, out-of-memory kill) costs at most the track it held:
    # that track is retried once on a new worker, then recorded with the signal as its reason
    for index, result in imap_unordered(prepare_one, jobs, workers, initializer=_init_worker,
                                        label=lambda i: f"track {jobs[i][0]}"):
        yield PrepareResult(jobs[index][0], None, result.reason) if isinstance(result, Crashed) else result


def _record(store: RunStore, r: PrepareResult) -> None:
    if r.error is not None:
        store.record_track_result(r.track_id, ok=False, error=r.error)
        return
    rel = f"spectrograms/{r.track_id}.png"
    store.write_bytes_atomic(rel, r.png)
    store.record_track_result(
        r.track_id, ok=True, duration=r.duration, sample_rate=r.sample_rate, channels=r.channels,
        spectrogram=rel, features={"audio": r.features} if r.features else None,
    )
