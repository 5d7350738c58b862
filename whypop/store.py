"""The run store: one directory per run, a versioned SQLite database (WAL) plus files.

Layout::

    runs/<name>/
      run.sqlite          tracks, planted boxes, features, models, extractions, concepts,
                          patches, jobs, meta (schema version, config, audio root)
      spectrograms/       <track_id>.png   (uint8 grayscale, low frequencies at the bottom)
      model/<model_id>/   weights + metrics
      extractions/<id>/   arrays (CAVs, scores, similarity) and rendered patch images
      cache/              content-addressed caches (activations, frozen-part outputs)
      audio/              generated audio (the demo collection)

Files are written to a temporary name and renamed into place; database rows pointing at
them are written after the file exists. A model or an extraction is written under a
``*.partial`` directory and becomes visible (status ``complete``) in one transaction
after its files are in place, so a stage interrupted at any point leaves the store
readable and the previous results intact. Ids and paths always come from the store,
never from request strings.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator, Sequence

from whypop.config import Config, config_from_dict
from whypop.errors import NotFound, StoreError
from whypop.ids import MAX_TRACK_ID, parse_id
from whypop.ids import short as _short
from whypop.tracks import PlantedRegion, Track

SCHEMA_VERSION = 1
STALE_EXTRACTION = "interrupted: its process ended without finishing (found by the next command)"
# (run root, extraction id) -> open file descriptor holding the extraction's lock, per process
_EXTRACTION_LOCKS: dict[tuple[str, int], int] = {}
DB_NAME = "run.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracks (
    track_id TEXT PRIMARY KEY,
    genre TEXT NOT NULL,
    split TEXT NOT NULL,            -- training | validation | test
    source TEXT NOT NULL,           -- audio path relative to the audio root (or absolute)
    title TEXT NOT NULL DEFAULT '',
    artist TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'pending',   -- pending | ok | failed
    error TEXT,
    duration REAL,                  -- seconds of audio decoded
    sample_rate INTEGER,            -- of the source file
    channels INTEGER,
    spectrogram TEXT,               -- path relative to the run directory
    prepared_at REAL
);
CREATE INDEX IF NOT EXISTS tracks_genre ON tracks(genre, split);
CREATE TABLE IF NOT EXISTS planted (
    track_id TEXT NOT NULL REFERENCES tracks(track_id),
    kind TEXT NOT NULL,             -- signature | artefact
    label TEXT NOT NULL,
    t0 REAL NOT NULL, t1 REAL NOT NULL,   -- seconds
    f0 REAL NOT NULL, f1 REAL NOT NULL    -- Hz
);
CREATE INDEX IF NOT EXISTS planted_track ON planted(track_id);
CREATE TABLE IF NOT EXISTS features (
    track_id TEXT NOT NULL,
    source TEXT NOT NULL,           -- echonest | audio
    name TEXT NOT NULL,
    value REAL,                     -- NULL = not measurable
    PRIMARY KEY (track_id, source, name)
);
CREATE TABLE IF NOT EXISTS models (
    model_id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    status TEXT NOT NULL,           -- running | complete | failed
    arch TEXT NOT NULL,
    path TEXT,                      -- directory relative to the run
    config TEXT NOT NULL,           -- resolved configuration (JSON)
    metrics TEXT,                   -- JSON
    origin TEXT NOT NULL DEFAULT 'trained',   -- trained | imported
    finished REAL
);
CREATE TABLE IF NOT EXISTS extractions (
    extraction_id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    status TEXT NOT NULL,           -- running | complete | failed | cancelled
    model_id INTEGER,
    params TEXT NOT NULL,           -- JSON: the extract + summary configuration
    code_version TEXT NOT NULL,
    timings TEXT,                   -- JSON: seconds per stage
    summary TEXT,                   -- JSON: per-genre results (overlap with planted, ...)
    path TEXT,
    error TEXT,
    job_id TEXT,
    finished REAL
);
CREATE TABLE IF NOT EXISTS concepts (
    extraction_id INTEGER NOT NULL,
    concept_id INTEGER NOT NULL,
    genre TEXT NOT NULL,
    name TEXT NOT NULL,             -- e.g. "Kick concept 3"
    tcav_mean REAL NOT NULL,
    tcav_std REAL NOT NULL,
    p_value REAL NOT NULL,
    significant INTEGER NOT NULL,
    flags TEXT NOT NULL DEFAULT '[]',     -- JSON list of {"flag": ..., "reason": ...}
    cluster INTEGER,                -- cross-genre cluster (summary)
    x REAL, y REAL,                 -- position on the concept map
    n_patches INTEGER NOT NULL,
    PRIMARY KEY (extraction_id, concept_id)
);
CREATE TABLE IF NOT EXISTS patches (
    extraction_id INTEGER NOT NULL,
    concept_id INTEGER NOT NULL,
    rank INTEGER NOT NULL,          -- 0 = closest to the concept centre
    track_id TEXT NOT NULL,
    x0 INTEGER NOT NULL, y0 INTEGER NOT NULL, x1 INTEGER NOT NULL, y1 INTEGER NOT NULL,
    mask TEXT,                      -- image path relative to the run (the segment mask)
    distance REAL,
    PRIMARY KEY (extraction_id, concept_id, rank)
);
CREATE INDEX IF NOT EXISTS patches_track ON patches(extraction_id, track_id);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,           -- queued | running | complete | failed | cancelled
    params TEXT NOT NULL,
    started_by TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    stage TEXT,
    progress REAL,
    error TEXT,
    pid INTEGER,
    host TEXT,
    heartbeat REAL,                 -- last sign of life from the process running it
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    extraction_id INTEGER,
    step TEXT,                      -- the running step (whypop.results.JobProgress)
    genre TEXT,
    done INTEGER,
    total INTEGER
);
"""

# columns added after a table's first version: (table, column, type), added to older stores on open
_ADDED_COLUMNS = (("jobs", "step", "TEXT"), ("jobs", "genre", "TEXT"), ("jobs", "done", "INTEGER"),
                  ("jobs", "total", "INTEGER"))

TRACK_COLUMNS = (
    "track_id", "genre", "split", "source", "title", "artist", "status", "error",
    "duration", "sample_rate", "channels", "spectrogram", "prepared_at",
)


class RunStore:
    """A run directory. Opening creates it (``create=True``) or checks its schema.

    ``read_only=True`` (``whypop status``, the dashboard) opens the database read-only: it
    never takes a write lock, so it never waits behind a writer (WAL readers see the last
    committed state), and it never creates or migrates anything. An existing file that is
    not a run store (empty, truncated, corrupt, another program's database) is refused
    with a StoreError naming it, never rebuilt. Opening for writing also reaps extractions
    left "running" by a process that is gone (see :meth:`reap_stale_extractions`).
    """

    def __init__(self, root: str | Path, create: bool = False, read_only: bool = False):
        self.root = Path(root).resolve()
        self.db_path = self.root / DB_NAME
        self.read_only = read_only
        self._local = threading.local()
        existed = self.db_path.exists()
        if not existed:
            if not create or read_only:
                raise StoreError(f"no run store at {self.root} (run `whypop prepare ... --run {root}` first)")
            self.root.mkdir(parents=True, exist_ok=True)
        else:
            self._check_existing()
        if read_only:
            return
        self.db.executescript(_SCHEMA)
        with self.transaction() as db:
            for table, column, kind in _ADDED_COLUMNS:
                if column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                db.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (str(time.time()),))
        for sub in ("spectrograms", "model", "extractions", "cache"):
            (self.root / sub).mkdir(exist_ok=True)
        self.reap_stale_extractions()

    def _check_existing(self) -> None:
        """Refuse an existing file that is no run store of a version this code reads (never rebuild it)."""
        fix = "restore it from a copy, move it away, or use another --run"
        if not self.db_path.is_file():
            raise StoreError(f"{self.db_path} is not a file: {fix}")
        if self.db_path.stat().st_size == 0:
            raise StoreError(f"{self.db_path} is empty (0 bytes), not a run store: {fix}")
        conn = None
        try:  # a read-only look: a foreign database must not be switched to WAL by opening it
            conn = self._connect_read_only()
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() if "meta" in tables else None
            if row is not None:
                conn.execute("SELECT COUNT(*) FROM tracks").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.db_path} is damaged or not a run store ({exc}): {fix}") from None
        finally:
            if conn is not None:
                conn.close()
        if row is None or not {"tracks", "extractions"} <= tables:
            raise StoreError(f"{self.db_path} is another program's SQLite database, not a run store: {fix}")
        try:
            version = int(row[0])
        except (TypeError, ValueError):
            raise StoreError(f"{self.db_path} has a broken schema version {row[0]!r}: {fix}") from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"run store {self.root} has schema version {version}, newer than this whypop "
                f"understands ({SCHEMA_VERSION}); upgrade whypop to read it"
            )

    # -- connection -------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = self._connect_read_only() if self.read_only else self._connect()
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=60000")
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """mode=ro; in a directory this user cannot write (no WAL index to create), immutable."""
        uri = "file:" + urllib.parse.quote(str(self.db_path))
        conn = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=5, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            if os.access(self.root, os.W_OK):
                conn.close()
                raise
            conn.close()
            conn = sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA query_only=1")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE), committed on success, rolled back on error."""
        if self.read_only:
            raise StoreError(f"run store {self.root} is open read-only")
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- meta -------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0]) if key != "schema_version" else int(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    @property
    def audio_root(self) -> Path | None:
        """The collection's folder; stored relative to the run when it lies inside it (runs can move)."""
        root = self.get_meta("audio_root")
        if not root:
            return None
        path = Path(root)
        return path if path.is_absolute() else self.root / path

    def set_audio_root(self, path: str | Path) -> None:
        """Record the collection's folder: relative when inside the run, so a copied run reads its own audio."""
        path = Path(path).resolve()
        self.set_meta("audio_root", str(path.relative_to(self.root)) if self.root in path.parents or path == self.root else str(path))

    def stored_config(self) -> Config | None:
        """The configuration this run was prepared with (a Config), or None."""
        data = self.get_meta("config")
        return None if data is None else config_from_dict(data)

    # -- files ------------------------------------------------------------------------
    def path(self, relative: str | os.PathLike) -> Path:
        """Resolve a path stored in the database; refuse anything outside the run."""
        p = (self.root / relative).resolve()
        if p != self.root and self.root not in p.parents:
            raise NotFound(f"path {relative!s} is outside the run store")
        return p

    def write_bytes_atomic(self, relative: str, data: bytes) -> Path:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return target

    # -- tracks -----------------------------------------------------------------------
    def upsert_tracks(self, tracks: Sequence[Track]) -> None:
        """Register tracks; a track already registered keeps its split, status and spectrogram.

        A track's split never changes once stored: moving a song between training and the
        held-out splits would let models be evaluated, and concepts drawn, on songs they
        trained on.
        """
        with self.transaction() as db:
            for t in tracks:
                db.execute(
                    """INSERT INTO tracks (track_id, genre, split, source, title, artist)
                       VALUES (?, ?, ?, ?, ?, ?)
                       ON CONFLICT(track_id) DO UPDATE SET genre=excluded.genre,
                         source=excluded.source,
                         title=excluded.title, artist=excluded.artist""",
                    (t.track_id, t.genre, t.split, t.source, t.title, t.artist),
                )

    def record_track_result(
        self,
        track_id: str,
        *,
        ok: bool,
        error: str | None = None,
        duration: float | None = None,
        sample_rate: int | None = None,
        channels: int | None = None,
        spectrogram: str | None = None,
        features: dict[str, dict[str, float | None]] | None = None,
    ) -> None:
        """Mark a track prepared (its spectrogram file already in place) or failed."""
        with self.transaction() as db:
            db.execute(
                """UPDATE tracks SET status=?, error=?, duration=?, sample_rate=?, channels=?,
                   spectrogram=?, prepared_at=? WHERE track_id=?""",
                ("ok" if ok else "failed", error, duration, sample_rate, channels, spectrogram,
                 time.time(), track_id),
            )
            for source, values in (features or {}).items():
                db.executemany(
                    "INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?)",
                    [(track_id, source, k, v) for k, v in values.items()],
                )

    def record_missing(self, track_id: str, genre: str, split: str, source: str, error: str) -> None:
        """A track listed in metadata that cannot even be registered normally (e.g. missing file)."""
        self.upsert_tracks([Track(track_id, genre, split, source)])
        self.record_track_result(track_id, ok=False, error=error)

    def tracks(self, status: str | None = None, genre: str | None = None, split: str | None = None) -> list[Track]:
        sql, args = "SELECT * FROM tracks WHERE 1=1", []
        for col, val in (("status", status), ("genre", genre), ("split", split)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        rows = self.db.execute(sql + " ORDER BY genre, track_id", args).fetchall()
        return [Track(**{k: r[k] for k in TRACK_COLUMNS}) for r in rows]

    def track(self, track_id: str) -> Track:
        if isinstance(track_id, int) and not isinstance(track_id, bool):
            track_id = str(track_id)
        if not isinstance(track_id, str) or len(track_id) > MAX_TRACK_ID:
            raise NotFound(f"unknown track id {_short(track_id)}")
        row = self.db.execute("SELECT * FROM tracks WHERE track_id=?", (track_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown track id {_short(track_id)}")
        return Track(**{k: row[k] for k in TRACK_COLUMNS})

    def genres(self) -> list[str]:
        """Genres with at least one prepared track, sorted (the model's class order)."""
        rows = self.db.execute("SELECT DISTINCT genre FROM tracks WHERE status='ok' ORDER BY genre").fetchall()
        return [r[0] for r in rows]

    def audio_path(self, track_id: str) -> Path:
        """The audio file of a known track (resolved against the run's audio root)."""
        t = self.track(track_id)
        p = Path(t.source)
        if not p.is_absolute():
            root = self.audio_root
            if root is None:
                raise NotFound(f"track {track_id!r} has no audio root")
            p = root / p
        return p

    def spectrogram_path(self, track_id: str) -> Path:
        t = self.track(track_id)
        if t.status != "ok" or not t.spectrogram:
            raise NotFound(f"track {track_id!r} has no spectrogram ({t.error or t.status})")
        return self.path(t.spectrogram)

    def load_spectrogram(self, track_id: str):
        """The track's spectrogram as a uint8 array (H, W), row 0 = highest frequency."""
        import numpy as np  # not at the top: `whypop status` opens the store without numpy
        from PIL import Image

        with Image.open(self.spectrogram_path(track_id)) as im:
            return np.asarray(im.convert("L"))

    # -- planted ground truth -------------------------------------------------------------
    def set_planted(self, regions: Sequence[PlantedRegion]) -> None:
        with self.transaction() as db:
            ids = sorted({r.track_id for r in regions})
            db.executemany("DELETE FROM planted WHERE track_id=?", [(i,) for i in ids])
            db.executemany(
                "INSERT INTO planted VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.track_id, r.kind, r.label, r.t0, r.t1, r.f0, r.f1) for r in regions],
            )

    def planted(self, track_id: str | None = None) -> list[PlantedRegion]:
        if track_id is None:
            rows = self.db.execute("SELECT * FROM planted ORDER BY track_id").fetchall()
        else:
            rows = self.db.execute("SELECT * FROM planted WHERE track_id=?", (track_id,)).fetchall()
        return [PlantedRegion(**dict(r)) for r in rows]

    # -- features ---------------------------------------------------------------------
    def set_features(self, track_id: str, source: str, values: dict[str, float | None]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?)",
                [(track_id, source, k, v) for k, v in values.items()],
            )

    def features(self, source: str, track_ids: Sequence[str] | None = None) -> dict[str, dict[str, float | None]]:
        """{track_id: {name: value}} for one source ('echonest' or 'audio')."""
        rows = self.db.execute("SELECT track_id, name, value FROM features WHERE source=?", (source,)).fetchall()
        wanted = None if track_ids is None else set(map(str, track_ids))
        out: dict[str, dict[str, float | None]] = {}
        for r in rows:
            if wanted is None or r[0] in wanted:
                out.setdefault(r[0], {})[r[1]] = r[2]
        return out

    def feature_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT source, COUNT(DISTINCT track_id) FROM features GROUP BY source").fetchall()
        return {r[0]: r[1] for r in rows}

    # -- models -----------------------------------------------------------------------
    def begin_model(self, arch: str, config: dict, origin: str = "trained") -> tuple[int, Path]:
        """A new model row (status running) and its partial directory to write into."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO models (created, status, arch, config, origin) VALUES (?, 'running', ?, ?, ?)",
                (time.time(), arch, json.dumps(config), origin),
            )
            model_id = int(cur.lastrowid)
        partial = self.root / "model" / f"{model_id}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        return model_id, partial

    def complete_model(self, model_id: int, metrics: dict) -> Path:
        """Move the partial directory into place and mark the model complete (atomic)."""
        partial = self.root / "model" / f"{model_id}.partial"
        final = self.root / "model" / str(model_id)
        if not partial.is_dir():
            raise StoreError(f"model {model_id} has no partial directory to complete")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        with self.transaction() as db:
            db.execute(
                "UPDATE models SET status='complete', path=?, metrics=?, finished=? WHERE model_id=?",
                (str(final.relative_to(self.root)), json.dumps(metrics), time.time(), model_id),
            )
        return final

    def fail_model(self, model_id: int, error: str) -> None:
        shutil.rmtree(self.root / "model" / f"{model_id}.partial", ignore_errors=True)
        with self.transaction() as db:
            db.execute(
                "UPDATE models SET status='failed', metrics=?, finished=? WHERE model_id=?",
                (json.dumps({"error": error}), time.time(), model_id),
            )

    def current_model(self) -> dict | None:
        """The newest complete model: {model_id, arch, path (absolute), config, metrics, ...}."""
        row = self.db.execute(
            "SELECT * FROM models WHERE status='complete' ORDER BY model_id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else self._model_dict(row)

    def models(self) -> list[dict]:
        return [self._model_dict(r) for r in self.db.execute("SELECT * FROM models ORDER BY model_id").fetchall()]

    def _model_dict(self, row: sqlite3.Row) -> dict:
        d = dict(row)
        d["config"] = json.loads(d["config"])
        d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else None
        d["path"] = str(self.root / d["path"]) if d["path"] else None
        return d

    # -- extractions ------------------------------------------------------------------
    def begin_extraction(self, params: dict, code_version: str, model_id: int | None, job_id: str | None = None) -> tuple[int, Path]:
        with self.transaction() as db:
            cur = db.execute(
                """INSERT INTO extractions (created, status, model_id, params, code_version, job_id)
                   VALUES (?, 'running', ?, ?, ?, ?)""",
                (time.time(), model_id, json.dumps(params), code_version, job_id),
            )
            extraction_id = int(cur.lastrowid)
            self._hold_extraction_lock(extraction_id)  # before anyone can see the row
        partial = self.root / "extractions" / f"{extraction_id}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        return extraction_id, partial

    def complete_extraction(
        self,
        extraction_id: int,
        concepts: Sequence[dict],
        patches: Sequence[dict],
        timings: dict,
        summary: dict,
    ) -> Path:
        """Files first (rename the partial directory), then every row in one transaction."""
        partial = self.root / "extractions" / f"{extraction_id}.partial"
        final = self.root / "extractions" / str(extraction_id)
        if not partial.is_dir():
            raise StoreError(f"extraction {extraction_id} has no partial directory to complete")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        with self.transaction() as db:
            db.execute("DELETE FROM concepts WHERE extraction_id=?", (extraction_id,))
            db.execute("DELETE FROM patches WHERE extraction_id=?", (extraction_id,))
            db.executemany(
                """INSERT INTO concepts VALUES (:extraction_id, :concept_id, :genre, :name, :tcav_mean,
                   :tcav_std, :p_value, :significant, :flags, :cluster, :x, :y, :n_patches)""",
                [{**c, "extraction_id": extraction_id, "flags": json.dumps(c.get("flags", [])),
                  "significant": int(bool(c["significant"])), "cluster": c.get("cluster"),
                  "x": c.get("x"), "y": c.get("y")} for c in concepts],
            )
            db.executemany(
                """INSERT INTO patches VALUES (:extraction_id, :concept_id, :rank, :track_id,
                   :x0, :y0, :x1, :y1, :mask, :distance)""",
                [{"mask": None, "distance": None, **p, "extraction_id": extraction_id} for p in patches],
            )
            db.execute(
                """UPDATE extractions SET status='complete', path=?, timings=?, summary=?, finished=?
                   WHERE extraction_id=?""",
                (str(final.relative_to(self.root)), json.dumps(timings), json.dumps(summary), time.time(), extraction_id),
            )
        self._release_extraction_lock(extraction_id)
        return final

    def fail_extraction(self, extraction_id: int, error: str, status: str = "failed") -> None:
        """Mark an unfinished extraction failed or cancelled and remove its partial data."""
        shutil.rmtree(self.root / "extractions" / f"{extraction_id}.partial", ignore_errors=True)
        with self.transaction() as db:
            db.execute("DELETE FROM concepts WHERE extraction_id=?", (extraction_id,))
            db.execute("DELETE FROM patches WHERE extraction_id=?", (extraction_id,))
            db.execute(
                "UPDATE extractions SET status=?, error=?, finished=? WHERE extraction_id=? AND status='running'",
                (status, error, time.time(), extraction_id),
            )
        self._release_extraction_lock(extraction_id)

    # -- running extractions: a lock file held by the process doing the work ----------------
    def _lock_path(self, extraction_id: int) -> Path:
        return self.root / "extractions" / f"{int(extraction_id)}.lock"

    def _hold_extraction_lock(self, extraction_id: int) -> None:
        path = self._lock_path(extraction_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _EXTRACTION_LOCKS[(str(self.root), int(extraction_id))] = fd

    def _release_extraction_lock(self, extraction_id: int) -> None:
        fd = _EXTRACTION_LOCKS.pop((str(self.root), int(extraction_id)), None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._lock_path(extraction_id))
        if fd is not None:
            os.close(fd)

    def extraction_alive(self, extraction_id: int) -> bool:
        """Whether the process that began a running extraction still holds its lock (it ends with the process)."""
        if (str(self.root), int(extraction_id)) in _EXTRACTION_LOCKS:
            return True
        try:
            fd = os.open(self._lock_path(extraction_id), os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also drops the probe's own lock
        return False

    def reap_stale_extractions(self) -> list[int]:
        """Mark failed every extraction left "running" by a process that is gone; remove its partial data."""
        if self.read_only or not self.db.execute("SELECT 1 FROM extractions WHERE status='running' LIMIT 1").fetchone():
            return []
        reaped = []
        with self.transaction() as db:
            for (eid,) in db.execute("SELECT extraction_id FROM extractions WHERE status='running'").fetchall():
                if self.extraction_alive(eid):
                    continue
                db.execute("DELETE FROM concepts WHERE extraction_id=?", (eid,))
                db.execute("DELETE FROM patches WHERE extraction_id=?", (eid,))
                db.execute("UPDATE extractions SET status='failed', error=?, finished=? WHERE extraction_id=?",
                           (STALE_EXTRACTION, time.time(), eid))
                reaped.append(int(eid))
        for eid in reaped:
            shutil.rmtree(self.root / "extractions" / f"{eid}.partial", ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._lock_path(eid))
        return reaped

    def extractions(self, status: str | None = "complete") -> list[dict]:
        sql = "SELECT * FROM extractions"
        args: tuple = ()
        if status is not None:
            sql += " WHERE status=?"
            args = (status,)
        return [self._extraction_dict(r) for r in self.db.execute(sql + " ORDER BY extraction_id", args).fetchall()]

    def extraction(self, extraction_id: int | str | None = None) -> dict:
        """A complete extraction by id, or the latest complete one when id is None."""
        if extraction_id is None:
            row = self.db.execute(
                "SELECT * FROM extractions WHERE status='complete' ORDER BY extraction_id DESC LIMIT 1"
            ).fetchone()
            if row is None:
                raise NotFound("this run has no complete extraction yet (run `whypop extract`)")
            return self._extraction_dict(row)
        eid = parse_id(extraction_id, "extraction")
        row = self.db.execute(
            "SELECT * FROM extractions WHERE extraction_id=? AND status='complete'", (eid,)
        ).fetchone()
        if row is None:
            raise NotFound(f"unknown extraction id {extraction_id!r}")
        return self._extraction_dict(row)

    def _extraction_dict(self, row: sqlite3.Row) -> dict:
        d = dict(row)
        for key in ("params", "timings", "summary"):
            d[key] = json.loads(d[key]) if d[key] else None
        d["path"] = str(self.root / d["path"]) if d["path"] else None
        return d

    def concepts(self, extraction_id: int) -> list[dict]:
        rows = self.db.execute(
            "SELECT * FROM concepts WHERE extraction_id=? ORDER BY genre, concept_id", (parse_id(extraction_id, "extraction"),)
        ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["flags"] = json.loads(d["flags"])
            d["significant"] = bool(d["significant"])
            out.append(d)
        return out

    def concept(self, extraction_id: int, concept_id: int | str) -> dict:
        cid = parse_id(concept_id, "concept")
        row = self.db.execute(
            "SELECT * FROM concepts WHERE extraction_id=? AND concept_id=?", (parse_id(extraction_id, "extraction"), cid)
        ).fetchone()
        if row is None:
            raise NotFound(f"unknown concept id {concept_id!r} in extraction {extraction_id}")
        d = dict(row)
        d["flags"] = json.loads(d["flags"])
        d["significant"] = bool(d["significant"])
        return d

    def patches(self, extraction_id: int, concept_id: int | None = None, track_id: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM patches WHERE extraction_id=?", [parse_id(extraction_id, "extraction")]
        if concept_id is not None:
            sql += " AND concept_id=?"
            args.append(parse_id(concept_id, "concept"))
        if track_id is not None:
            sql += " AND track_id=?"
            args.append(str(track_id))
        return [dict(r) for r in self.db.execute(sql + " ORDER BY concept_id, rank", args).fetchall()]

    # -- jobs -------------------------------------------------------------------------
    def jobs(self, status: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM jobs", ()
        if status:
            sql += " WHERE status=?"
            args = (status,)
        rows = self.db.execute(sql + " ORDER BY created", args).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["params"] = json.loads(d["params"])
            out.append(d)
        return out

    # -- summary ----------------------------------------------------------------------
    def status(self) -> dict:
        """Everything `whypop status --json` prints (keys documented in the README)."""
        counts = {r[0]: r[1] for r in self.db.execute("SELECT status, COUNT(*) FROM tracks GROUP BY status")}
        failed = [
            {"track_id": r[0], "genre": r[1], "source": r[2], "error": r[3]}
            for r in self.db.execute("SELECT track_id, genre, source, error FROM tracks WHERE status='failed' ORDER BY track_id")
        ]
        per_genre: dict[str, dict[str, int]] = {}
        for genre, split, n in self.db.execute(
            "SELECT genre, split, COUNT(*) FROM tracks WHERE status='ok' GROUP BY genre, split"
        ):
            per_genre.setdefault(genre, {})[split] = n
        model = self.current_model()
        jobs = self.jobs()
        return {
            "run": str(self.root),
            "schema_version": SCHEMA_VERSION,
            "audio_root": str(self.audio_root) if self.audio_root else None,
            "tracks": {
                "total": sum(counts.values()),
                "ok": counts.get("ok", 0),
                "failed": counts.get("failed", 0),
                "pending": counts.get("pending", 0),
                "per_genre": per_genre,
                "failures": failed,
            },
            "planted_regions": self.db.execute("SELECT COUNT(*) FROM planted").fetchone()[0],
            "features": self.feature_counts(),
            "model": None if model is None else {
                "model_id": model["model_id"], "arch": model["arch"], "origin": model["origin"],
                "metrics": model["metrics"],
            },
            "extractions": [
                {"extraction_id": e["extraction_id"], "status": e["status"], "created": e["created"],
                 "stale": e["status"] == "running" and not self.extraction_alive(e["extraction_id"]),
                 "concepts": self.db.execute("SELECT COUNT(*) FROM concepts WHERE extraction_id=?", (e["extraction_id"],)).fetchone()[0],
                 "timings": e["timings"], "summary": e["summary"], "error": e["error"]}
                for e in self.extractions(status=None)
            ],
            "jobs": [
                {k: j[k] for k in ("job_id", "kind", "status", "stage", "step", "genre", "done", "total", "progress",
                                   "started_by", "created", "finished", "error", "extraction_id")}
                for j in jobs
            ],
        }
