"""`whypop status`: what a run holds (tracks ok and failed with reasons, model, extractions, jobs)."""

from __future__ import annotations

import argparse
import json

from whypop.ace import faithfulness, stability
from whypop.results import ExtractionSummary, GenreSummary, JobProgress
from whypop.store import RunStore
from whypop.text import visible


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run store directory")
    p.add_argument("--json", action="store_true", help="machine-readable output (keys in the README)")


def main(args: argparse.Namespace) -> int:
    store = RunStore(args.run, read_only=True)  # never waits behind a writer, never changes the run
    st = store.status()
    # what preparation skipped without a track to record it on (e.g. an empty genre folder)
    st["tracks"]["warnings"] = list(store.get_meta("prepare_warnings", None) or [])
    # songs added to a prepared folder collection take a hashed split: say when shares drift
    cfg = store.stored_config()
    drift = []
    if cfg is not None and store.get_meta("layout", None) == "folders":
        from whypop.datasets import split_drift  # numpy: only for folder collections (status stays quick)

        drift = split_drift(st["tracks"]["per_genre"], cfg.dataset.split)
    st["tracks"]["split_drift"] = drift
    st["collection"] = collection_summary(store)
    add_tests(store, st)
    if args.json:
        print(json.dumps(st, indent=2, sort_keys=True))
        return 0
    print(format_status(st))
    return 0


def collection_summary(store) -> dict | None:
    """The collection's summary (sample rates, durations, channels, warnings); computed for older runs."""
    from whypop.collection import summarize

    stored = store.get_meta("collection", None)
    if stored:
        return stored
    tracks = store.tracks(status="ok")
    cfg = store.stored_config()
    if not tracks or cfg is None:
        return None
    return summarize(tracks, cfg.audio, cfg.dataset.split, fixed_split=store.get_meta("layout") in ("fma", "demo")).to_dict()


def add_tests(store: RunStore, st: dict) -> None:
    """Each complete extraction's deletion/insertion tests and seed matching (None when not run);
    the latest complete extraction's also at the top, as ``faithfulness`` and ``stability``."""
    latest = None
    for e in st["extractions"]:
        e["faithfulness"] = e["stability"] = None
        if e["status"] != "complete":
            continue
        path = store.extraction(e["extraction_id"])["path"]
        f, s = faithfulness.load_file(path), stability.load_file(path)
        e["faithfulness"] = None if f is None else f.to_dict()
        e["stability"] = None if s is None else s.to_dict()
        latest = e
    st["faithfulness"] = None if latest is None else latest["faithfulness"]
    st["stability"] = None if latest is None else latest["stability"]


def format_status(st: dict) -> str:
    """The human-readable status; names from the user's files are printed with control characters visible."""
    return "\n".join(visible(line) for line in _status_lines(st))


def _status_lines(st: dict) -> list[str]:
    t = st["tracks"]
    lines = [f"run {st['run']}", f"  tracks: {t['ok']} ok, {t['failed']} failed, {t['pending']} pending (of {t['total']})"]
    for genre, splits in sorted(t["per_genre"].items()):
        lines.append(f"    {genre}: " + ", ".join(f"{k} {v}" for k, v in sorted(splits.items())))
    for w in t.get("warnings", []) + t.get("split_drift", []):
        lines.append(f"    warning: {w}")
    if st.get("collection"):
        from whypop.collection import CollectionSummary

        summary = CollectionSummary.from_dict(st["collection"])
        lines.extend("  " + line for line in summary.lines())
        lines.extend(f"    warning: {w}" for w in summary.warnings)
    for f in t["failures"][:50]:
        lines.append(f"    failed {f['track_id']} ({f['source']}): {f['error']}")
    if len(t["failures"]) > 50:
        lines.append(f"    ... and {len(t['failures']) - 50} more failures (see --json)")
    if st["planted_regions"]:
        lines.append(f"  planted regions (demo ground truth): {st['planted_regions']}")
    feats = st["features"]
    lines.append("  features: " + (", ".join(f"{k} for {v} tracks" for k, v in sorted(feats.items())) or "none"))
    m = st["model"]
    if m is None:
        lines.append("  model: none (run `whypop train`)")
    else:
        metrics = m["metrics"] or {}
        acc = ", ".join(f"{k} {v:.1%}" for k, v in (metrics.get("accuracy") or {}).items())
        lines.append(f"  model {m['model_id']}: {m['arch']} ({m['origin']}){'; accuracy ' + acc if acc else ''}")
        for note in metrics.get("notes", []):
            lines.append(f"    {note}")
    for e in st["extractions"]:
        state = "running, but its process is gone (the next command that writes marks it failed)" if e.get("stale") else e["status"]
        line = f"  extraction {e['extraction_id']}: {state}, {e['concepts']} concepts"
        if e.get("error"):
            line += f" ({e['error']})"
        lines.append(line)
        summary = e.get("summary") or {}
        if summary.get("plan"):
            lines.append(f"    {summary['plan']['line']}")
        songs = {g: v["score_songs"] for g, v in (summary.get("genres") or {}).items() if "score_songs" in v}
        if songs:
            lines.append("    TCAV score songs per genre: " + ", ".join(f"{g} {n}" for g, n in sorted(songs.items())))
        for genre, g in sorted(ExtractionSummary.from_dict(e.get("summary")).genres.items()):
            lines.extend(_planted_lines(genre, g))
        if e.get("faithfulness"):
            f = faithfulness.Faithfulness.from_dict(e["faithfulness"])
            lines.extend(f"    {g.verdict()}" for g in f.genres.values())
        if e.get("stability"):
            s = stability.Stability.from_dict(e["stability"])
            lines.append(f"    stability over seeds {', '.join(map(str, s.seeds))}: mean best-match cosine "
                         f"{s.best_cosine}, share of significant concepts matched above {s.match}: {s.matched_share}"
                         + ("" if s.planted_everywhere is None else
                            f"; planted signatures found under every seed: {'yes' if s.planted_everywhere else 'no'}"))
    for j in st["jobs"][-10:]:
        lines.append(f"  job {j['job_id']}: {j['kind']} {j['status']} {JobProgress.from_row(j).text} {j.get('error') or ''}".rstrip())
    return lines


def _planted_lines(genre: str, g: GenreSummary) -> list[str]:
    """The demo's ground-truth check of one genre: overlap vs chance, and reliance."""
    if g.chance is None:  # no planted regions: not a demo run
        return []
    if g.overlap is not None:
        line = f"    {genre}: top concept overlaps planted signature {g.overlap:.2f} (chance {g.chance:.2f})"
    else:
        line = f"    {genre}: no significant concept (chance overlap {g.chance:.2f})"
    r = g.reliance
    if r:
        verdict = "relies on its signature" if r.relies_on_signature else "does NOT rely on its signature"
        line += f"; model {verdict}: p({genre}) {r.p_full:.2f} with it, {r.p_signature_hidden:.2f} with it hidden"
    return [line]
