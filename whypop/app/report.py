"""The HTML report of one extraction: what the dashboard shows, in one file that needs no server.

``build_report(store, out)`` reads the run through the same views as the dashboard
(:class:`whypop.app.data.AppData`), draws the same figures (:mod:`whypop.app.figures`,
the radar of :mod:`whypop.app.radar`, the deletion curves) and images (:mod:`whypop.app.images`), and writes
them with :class:`whypop.report.ReportDocument`. Contents: the run and its model
(accuracy per split, confusion matrix), the importance beeswarm and the concept map,
per genre its concepts with p-values and flags and, for the significant ones, their
example patches beside their source spectrogram (outlined) and the radar of the example
songs' features, the faithfulness curves when the extraction has them, and every
parameter of the extraction. Hover works; what needs the server (selecting, the song
view, jobs) is left out. ``whypop report`` and the dashboard's "download report" button
both call it.
"""

from __future__ import annotations

import datetime as _dt
import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import soundfile as sf

from whypop.app import ASSETS, figures, radar
from whypop.app.context import AppContext
from whypop.app.export import export_name
from whypop.app.data import NPZ_LOCK, AppData, Concept, ExtractionView
from whypop.app.images import box_mask, encode, overlay_png, patch_image
from whypop.app.model_figures import confusion_figure
from whypop.errors import NotFound, WhypopError
from whypop.listen import Listener
from whypop.progress import Progress, ProgressEvent, null_progress
from whypop.report import INLINE_LIMIT, ReportDocument, ReportFile, esc
from whypop.results import load_mask
from whypop.store import RunStore

log = logging.getLogger(__name__)

STAGE = "report"
EXPORT_JS = "whypop-export.js"


@dataclass(frozen=True)
class ReportResult:
    """One written report."""

    file: ReportFile
    run: str
    extraction_id: int
    concepts: int
    significant: int
    examples: int
    faithfulness: bool
    seconds: float

    def to_dict(self) -> dict:
        return {"file": self.file.to_dict(), "run": self.run, "extraction_id": self.extraction_id,
                "concepts": self.concepts, "significant": self.significant, "examples": self.examples,
                "faithfulness": self.faithfulness, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ReportResult":
        return cls(ReportFile.from_dict(d["file"]), str(d["run"]), int(d["extraction_id"]), int(d["concepts"]),
                   int(d["significant"]), int(d["examples"]), bool(d["faithfulness"]), float(d["seconds"]))


def plotly_js() -> str:
    """The vendored plotly.js bundle the dashboard serves (scatter, scatterpolar, heatmap)."""
    bundles = sorted(ASSETS.glob("plotly-*.min.js"))
    if not bundles:  # pragma: no cover - a broken install
        raise WhypopError(f"no plotly.js bundle in {ASSETS}: reinstall whypop")
    return bundles[-1].read_text(encoding="utf-8")


ClipRenderer = Callable[[int, int, int], "tuple[bytes, str] | None"]  # (extraction, concept, rank) -> (bytes, mime)
CLIP_MODE = "solo"  # the region with a little faded context, as panel 3's play buttons
MP3_QUALITY = 0.7  # libsndfile's compression level (0 best .. 1 smallest): about 2 kB per second of clip


def listener_clips(store: RunStore) -> ClipRenderer:
    """Each example's solo clip (:class:`whypop.listen.Listener`, the dashboard's renderer and its
    cache under the extraction), as MP3: a twentieth of the WAV, and every browser plays it."""
    listener = Listener(store, npz_lock=NPZ_LOCK, confine=True)

    def render(extraction_id: int, concept_id: int, rank: int) -> tuple[bytes, str]:
        rendered = listener.example(extraction_id, concept_id, rank, CLIP_MODE)
        try:
            samples, rate = sf.read(str(rendered.path), dtype="float32")
        finally:
            if not rendered.path.is_relative_to(store.root):
                rendered.path.unlink(missing_ok=True)  # an uncached render's temporary file
        buf = io.BytesIO()
        sf.write(buf, samples, rate, format="MP3", subtype="MPEG_LAYER_III", compression_level=MP3_QUALITY,
                 bitrate_mode="VARIABLE")
        return buf.getvalue(), "audio/mpeg"

    return render


def build_report(store: RunStore | str | os.PathLike, out: str | os.PathLike, extraction_id: int | None = None,
                 audio: bool = True, progress: Progress = null_progress,
                 inline_limit: int = INLINE_LIMIT, clips: ClipRenderer | None = None) -> ReportResult:
    """Write the report of ``extraction_id`` (None: the latest complete one) to ``out``.

    With ``audio`` every example gets a player of its clip: ``clips`` renders them
    (default: :func:`listener_clips`, the song's own audio through the concept's mask).
    Raises NotFound for an unknown extraction, WhypopError when the run has none.
    """
    started = time.perf_counter()
    if not isinstance(store, RunStore):
        store = RunStore(store)
    data = AppData(store)
    if extraction_id is None:
        extraction_id = data.latest_extraction()
        if extraction_id is None:
            raise WhypopError(f"run {store.root} has no complete extraction: run `whypop extract --run {store.root}` first")
    view = data.view(int(extraction_id))  # NotFound for an unknown or unfinished extraction
    eid = view.extraction_id
    record = store.extraction(eid)
    run = store.root.name
    ctx = AppContext(data=data, requests_prefix="/", read_only=True)
    colors = figures.genre_colors(view.genres)
    doc = ReportDocument(f"Why Pop? report: {run}, extraction {eid}", plotly_js(),
                         scripts=((ASSETS / EXPORT_JS).read_text(encoding="utf-8"),), inline_limit=inline_limit)
    significant = [c for c in view.concepts if c.significant]
    if audio and clips is None:
        clips = listener_clips(store)
    progress(ProgressEvent(STAGE, "overview", 0, 1))
    body: list[str] = [_header(data, view, record, run)]
    body.append(_model_section(doc, store, data, view, run))
    body.append(_overview_section(doc, view, colors, run))
    faith = data.faithfulness(eid)
    if faith is not None and faith.genres:
        body.append("<h2>Faithfulness: the deletion test</h2><p class='small muted'>Probability of the genre on "
                    "held-out songs after filling the regions of its k top concepts by TCAV (solid), random regions "
                    "of the same area (dashed) and its k bottom concepts (dotted); k = 0 is the songs untouched.</p>")
        body.append(doc.figure(figures.faithfulness_figure(faith, colors, height_px=260),
                               export_name(run, f"e{eid}", "faithfulness")))
        body.append("".join(f"<div class='small'>{esc(line)}</div>" for line in figures.verdict_lines(faith)))
    progress(ProgressEvent(STAGE, "overview", 1, 1))
    source = "echonest" if data.has_source("echonest") else "audio"
    examples = 0
    done = 0
    for genre in view.genres:
        concepts = sorted((c for c in view.concepts if c.genre == genre), key=lambda c: (-c.tcav_mean, c.concept_id))
        body.append(_genre_header(record, genre, concepts, colors.get(genre, "#000")))
        for c in concepts:
            if not c.significant:
                continue
            html_, n = _concept_section(doc, ctx, view, c, colors.get(genre, "#ff0000"), source, run,
                                        clips if audio else None)
            body.append(html_)
            examples += n
            done += 1
            progress(ProgressEvent(STAGE, "concepts", done, len(significant)))
    body.append(_parameters_section(record, data))
    progress(ProgressEvent(STAGE, "write", 0, 1))
    written = doc.write(out, "\n".join(body))
    progress(ProgressEvent(STAGE, "write", 1, 1))
    log.info("report of %s extraction %d: %s (%.1f MB)", run, eid, written.path, written.total_bytes / 1e6)
    return ReportResult(written, run, eid, len(view.concepts), len(significant), examples, faith is not None,
                        time.perf_counter() - started)


# -- sections ---------------------------------------------------------------------------------------


def _header(data: AppData, view: ExtractionView, record: dict, run: str) -> str:
    created = _dt.datetime.fromtimestamp(view.created, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    now = _dt.datetime.now(tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_sig = sum(c.significant for c in view.concepts)
    return (
        f"<h1>Why Pop? <span class='muted' style='font-weight:400'>what the genre network listens for</span></h1>"
        f"<p class='small muted'>Run <b>{esc(run)}</b> · extraction {view.extraction_id} of {esc(created)}"
        f" · layer {esc(view.layer or '?')} · {len(view.genres)} genres · {len(view.concepts)} concepts, "
        f"{n_sig} significant · code {esc(record.get('code_version') or '?')} · report written {esc(now)}</p>"
        "<p class='small'>Hover any point for details; the camera and SVG buttons above a figure download it. "
        "Selecting concepts and songs, the song view and re-extraction need the dashboard "
        f"(<code>whypop serve --run {esc(run)}</code>).</p>"
    )


def _model_section(doc: ReportDocument, store: RunStore, data: AppData, view: ExtractionView, run: str) -> str:
    summary = data.model_summary(view.model_id)
    out = ["<h2>The model</h2>"]
    if summary is None:
        out.append("<p class='muted'>This run has no complete model for this extraction.</p>")
        return "".join(out)
    row = next((m for m in store.models() if m["model_id"] == summary["model_id"]), {})
    metrics = row.get("metrics") or {}
    out.append(f"<p>Model {summary['model_id']} ({esc(summary['arch'])}), {esc(summary.get('origin') or 'trained')}.</p>")
    order = ["training", "validation", "test"]
    acc = sorted(summary["accuracy"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 9)
    left = ["<table><tr><th>split</th><th class='num'>accuracy</th><th class='num'>songs</th></tr>"]
    songs = metrics.get("songs") or {}
    for split, value in acc:
        left.append(f"<tr><td>{esc(split)}</td><td class='num'>{100 * value:.1f}%</td>"
                    f"<td class='num'>{esc(songs.get(split, ''))}</td></tr>")
    left.append("</table>")
    per_genre = metrics.get("per_genre") or {}
    if isinstance(per_genre, Mapping) and per_genre:
        left.append("<table><tr><th>genre</th><th class='num'>precision</th><th class='num'>recall</th></tr>")
        for g, m in sorted(per_genre.items()):
            m = m if isinstance(m, Mapping) else {}
            left.append(f"<tr><td>{esc(g)}</td><td class='num'>{_pct(m.get('precision'))}</td>"
                        f"<td class='num'>{_pct(m.get('recall'))}</td></tr>")
        left.append("</table>")
    for note in metrics.get("notes") or []:
        left.append(f"<div class='small muted'>{esc(note)}</div>")
    right = ""
    confusion = metrics.get("confusion")
    if isinstance(confusion, Mapping) and confusion.get("labels") and confusion.get("matrix"):
        split = str(confusion.get("split") or "test")
        fig = confusion_figure(list(confusion["labels"]), confusion["matrix"], split)
        right = (f"<div><div class='small muted'>Confusion matrix, {esc(split)} songs (rows: true genre)</div>"
                 + doc.figure(fig, export_name(run, f"model{summary['model_id']}", "confusion")) + "</div>")
    else:
        right = "<div class='small muted'>This model stored no confusion matrix.</div>"
    out.append(f"<div class='row'><div>{''.join(left)}</div>{right}</div>")
    return "".join(out)


def _overview_section(doc: ReportDocument, view: ExtractionView, colors: Mapping[str, str], run: str) -> str:
    eid = view.extraction_id
    legend = ("<div class='small'>● significant &nbsp; ○ not significant &nbsp; ◆ flagged as possibly spurious "
              "(see hover) &nbsp; <span class='muted'>····· mean of random concepts</span></div>")
    return (
        "<h2>Concept importance by genre</h2>"
        "<p class='small muted'>Each dot is a concept the network uses for a genre; height is its TCAV score "
        "(share of the genre's songs the concept pushes towards the genre).</p>"
        + doc.figure(figures.importance_figure(view, colors, width_px=1100, height_px=420),
                     export_name(run, f"e{eid}", "importance"))
        + legend
        + "<h2>Concept clusters</h2><p class='small muted'>Concepts of all genres grouped by the similarity of "
          "their CAVs (grey discs: cluster centres, placed with t-SNE).</p>"
        + doc.figure(figures.concept_map_figure(view, colors, height_px=520), export_name(run, f"e{eid}", "concept-map"))
    )


def _genre_header(record: dict, genre: str, concepts: list[Concept], color: str) -> str:
    summary = ((record.get("summary") or {}).get("genres") or {}).get(genre) or {}
    facts = []
    for key, value in summary.items():
        if isinstance(value, (list, tuple)):
            facts.append(f"{esc(key)}: {len(value)} songs")
        elif isinstance(value, float):
            facts.append(f"{esc(key)}: {value:.3g}")
        elif isinstance(value, (int, str, bool)) or value is None:
            facts.append(f"{esc(key)}: {esc(value)}")
        elif isinstance(value, Mapping):
            facts.append(f"{esc(key)}: " + ", ".join(f"{esc(k)} {esc(_short(v))}" for k, v in value.items()))
    rows = ["<table><tr><th>concept</th><th class='num'>TCAV</th><th class='num'>p</th><th></th>"
            "<th class='num'>patches</th><th>flags</th></tr>"]
    for c in concepts:
        badge = "<span class='badge ok'>significant</span>" if c.significant else "<span class='badge'>not significant</span>"
        name = f"<a href='#concept-{c.concept_id}'>{esc(c.name)}</a>" if c.significant else esc(c.name)
        rows.append(f"<tr><td>{name}</td><td class='num'>{c.tcav_mean:.2f} ± {c.tcav_std:.2f}</td>"
                    f"<td class='num'>{esc(figures.format_p(c.p_value))}</td><td>{badge}</td>"
                    f"<td class='num'>{c.n_patches}</td><td>{_flags(c)}</td></tr>")
    rows.append("</table>")
    n_sig = sum(c.significant for c in concepts)
    return (f"<h2 id='genre-{esc(genre)}'><span style='color:{esc(color)}'>●</span> {esc(genre)}</h2>"
            f"<p class='small'>{len(concepts)} concepts, {n_sig} significant.</p>"
            + (f"<p class='small muted'>{' · '.join(facts)}</p>" if facts else "") + "".join(rows))


def _concept_section(doc: ReportDocument, ctx: AppContext, view: ExtractionView, c: Concept, color: str,
                     source: str, run: str, clips: ClipRenderer | None) -> tuple[str, int]:
    data, eid = ctx.data, view.extraction_id
    examples = data.examples(eid, c.concept_id)
    tiles = []
    for ex in examples:
        try:
            patch, spec, overlay = _example_images(data, eid, c.concept_id, ex.rank, color)
        except (NotFound, OSError, ValueError) as exc:  # a file the store points at is missing
            log.warning("concept %d example %d left out: %s", c.concept_id, ex.rank, exc)
            continue
        tiles.append(
            f"<div class='example' data-track='{esc(ex.track_id)}'><div class='pair'>"
            + doc.image(patch, f"patch {ex.rank + 1} of {c.name}", "patch")
            + "<div class='context'>"
            + doc.image(spec, f"spectrogram of {ex.song}")
            + doc.image(overlay, f"where patch {ex.rank + 1} of {c.name} lies in {ex.song}", "overlay", title=ex.song)
            + "</div></div>"
            + f"<div class='song' title='{esc(ex.song)}'>{esc(ex.song)}</div>"
            + _clip(doc, clips, eid, c, ex.rank)
            + "</div>"
        )
    fig, caption, _style = radar.radar(ctx, eid, c.concept_id, source)
    badge = "<span class='badge ok'>significant</span>" if c.significant else "<span class='badge'>not significant</span>"
    html_ = (
        f"<div class='concept' id='concept-{c.concept_id}'>"
        f"<h3>{esc(c.name)} <span class='small muted'>({esc(c.genre)}, concept {c.concept_id})</span></h3>"
        f"<div class='small'>TCAV {c.tcav_mean:.2f} ± {c.tcav_std:.2f} · p = {esc(figures.format_p(c.p_value))} "
        f"· {c.n_patches} patches · cluster {esc(c.cluster if c.cluster is not None else '-')} {badge} {_flags(c)}</div>"
        f"<div class='small muted' style='margin:.4rem 0'>The concept's patches closest to its centre: what the network "
        f"saw (left), and where it sits in the song's spectrogram (right, outlined; low frequencies at the bottom).</div>"
        f"<div class='gallery'>{''.join(tiles) or '<div class=muted>No example patches stored.</div>'}</div>"
        f"<div class='small muted' style='margin-top:.6rem'>{esc(caption)}</div>"
        + doc.figure(fig, export_name(run, f"e{eid}", c.genre, f"c{c.concept_id}", "radar"))
        + "</div>"
    )
    return html_, len(tiles)


def _parameters_section(record: dict, data: AppData) -> str:
    rows = ["<table><tr><th>parameter</th><th>value</th></tr>"]
    for key, value in _flatten(record.get("params") or {}):
        rows.append(f"<tr><td><code>{esc(key)}</code></td><td>{esc(_short(value, 400))}</td></tr>")
    for key in ("extraction_id", "model_id", "code_version", "job_id"):
        rows.append(f"<tr><td><code>{esc(key)}</code></td><td>{esc(record.get(key))}</td></tr>")
    rows.append("</table>")
    timings = record.get("timings") or {}
    if timings:
        rows.append("<table><tr><th>step</th><th class='num'>seconds</th></tr>")
        rows += [f"<tr><td>{esc(k)}</td><td class='num'>{_short(v)}</td></tr>" for k, v in timings.items()]
        rows.append("</table>")
    audio = data.config.audio
    return ("<h2>Parameters of the extraction</h2><p class='small muted'>Every parameter the extraction ran with "
            f"(spectrograms: {audio.sample_rate} Hz, {audio.duration:g} s, {audio.n_mels} mel bands, "
            f"{audio.image_size} px images).</p>" + "".join(rows))


# -- helpers ----------------------------------------------------------------------------------------


def _example_images(data: AppData, eid: int, concept_id: int, rank: int, color: str) -> tuple[bytes, bytes, bytes]:
    """(patch PNG, source spectrogram PNG, outline overlay PNG) of one example."""
    store = data.store
    row = data.example(eid, concept_id, rank)
    spec_path = store.spectrogram_path(row["track_id"])
    spec = store.load_spectrogram(row["track_id"])
    box = (int(row["x0"]), int(row["y0"]), int(row["x1"]), int(row["y1"]))
    mask = None
    if row["mask"]:
        with NPZ_LOCK:
            mask = load_mask(store, eid, row["mask"])
        if mask.shape != spec.shape:
            log.warning("mask %s has shape %s, spectrogram %s: using the box", row["mask"], mask.shape, spec.shape)
            mask = None
    if mask is None:
        mask = box_mask(spec.shape, box)
    stored = Path(store.extraction(eid)["path"]) / "patches" / f"{concept_id}_{rank}.png"
    patch = stored.read_bytes() if stored.is_file() else encode(patch_image(spec, mask, box))
    return patch, spec_path.read_bytes(), overlay_png(mask, color)


def _clip(doc: ReportDocument, clips: ClipRenderer | None, eid: int, c: Concept, rank: int) -> str:
    """An audio player for one example, when a renderer gives it a clip."""
    if clips is None:
        return ""
    try:
        clip = clips(eid, c.concept_id, rank)
    except (WhypopError, OSError, ValueError, RuntimeError) as exc:  # RuntimeError: libsndfile
        log.warning("no clip for concept %d example %d: %s", c.concept_id, rank, exc)
        return ""
    return "" if clip is None else doc.audio(clip[0], clip[1], f"example {rank + 1} of {c.name}")


def _flags(c: Concept) -> str:
    out = []
    for flag, reason in c.flags:
        if flag == figures.SIGNIFICANCE_FLAG:
            continue
        out.append(f"<span class='flag' title='{esc(reason)}'>⚑ {esc(flag)}</span>"
                   + (f" <span class='small muted'>{esc(reason)}</span>" if reason else ""))
    return " ".join(out)


def _flatten(value: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, value


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else ""


def _short(value: Any, n: int = 60) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else (", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value))
    return text if len(text) <= n else text[: n - 1] + "…"
