"""`whypop listen`: hear a concept: one of its examples, or its regions within a song, as a WAV file.

``--mode solo`` keeps only the concept's region of the song's own audio (examples get
half a second of faded context either side); ``--mode without`` is the song minus the
region. ``--json`` prints the region (``start_s``, ``end_s``, ``low_hz``, ``high_hz``), the
gain applied, the share of the clip's energy inside the band, and whether the audio was
rebuilt from the image (``fallback``).

``--track`` works for any track of the run: in one of the extraction's discovery songs the
concept's regions are its stored patches; in any other song they are the segments the
per-song explanation (``whypop explain``) places the concept on, computed here (seconds,
the first time: the clip is then cached). ``--upload SHA256`` does the same for a song
uploaded to the dashboard. A concept placed nowhere in the song is a one-line error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from whypop.errors import InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run store directory")
    p.add_argument("--concept", required=True, type=int, metavar="ID", help="concept id (as the dashboard and status show)")
    p.add_argument("--rank", type=int, default=0, metavar="K",
                   help="which example: 0 is the closest to the concept's centre (default 0)")
    p.add_argument("--mode", choices=("solo", "without"), default="solo",
                   help="solo: only the region; without: the song minus the region (default solo)")
    p.add_argument("--track", metavar="ID", default=None,
                   help="render the concept's regions in this song (its whole analysed window) instead of an example; "
                        "any track of the run (outside the discovery songs, where the explanation places the concept)")
    p.add_argument("--upload", metavar="SHA256", default=None,
                   help="render the concept's regions in a song uploaded to the dashboard (its id: the file's SHA-256)")
    p.add_argument("--extraction", type=int, default=None, metavar="ID", help="extraction id (default: the latest)")
    p.add_argument("--out", required=True, metavar="FILE.wav", help="where to write the clip (16-bit WAV)")
    p.add_argument("--json", action="store_true", help="print the clip's description as one JSON object")


def main(args: argparse.Namespace) -> int:
    from whypop.listen import Listener
    from whypop.sonify import band_share
    from whypop.store import RunStore

    out = Path(args.out)
    if out.suffix.lower() not in (".wav", ".wave"):
        raise InputError(f"--out {args.out}: clips are written as WAV; give a .wav file name")
    if not out.parent.is_dir():
        raise InputError(f"--out {args.out}: folder {out.parent} does not exist")
    if args.rank < 0:
        raise InputError(f"--rank {args.rank}: ranks start at 0")
    if args.track is not None and args.upload is not None:
        raise InputError("give --track or --upload, not both")
    store = RunStore(args.run)
    listener = Listener(store)
    if args.track is not None:
        if args.track in listener.discovery_songs(args.extraction):
            rendered = listener.song(args.extraction, args.concept, args.track, args.mode)
        else:
            rendered = listener.placed(args.extraction, args.concept, args.track, args.mode,
                                       lambda: _placed(store, args.extraction, args.concept, track=args.track))
    elif args.upload is not None:
        import pipelines.explain as pe

        audio = pe.upload_audio(store, args.upload)  # NotFound names the id
        rendered = listener.placed(args.extraction, args.concept, args.upload, args.mode,
                                   lambda: _placed(store, args.extraction, args.concept, upload=args.upload),
                                   audio_path=audio)
    else:
        rendered = listener.example(args.extraction, args.concept, args.rank, args.mode)
    shutil.copyfile(rendered.path, out)
    if not rendered.path.is_relative_to(listener.store.root):
        rendered.path.unlink(missing_ok=True)  # an uncached render's temporary file
    info = rendered.info
    record = rendered.to_dict()
    record.update(out=str(out), band_share=_band_share_of(out, info, band_share))
    if args.json:
        print(json.dumps(record, sort_keys=True))
    else:
        what = f"its regions in {rendered.track_id}" if rendered.rank is None else \
            f"example {rendered.rank} (from {rendered.track_id})"
        print(f"wrote {out}: {rendered.concept} ({rendered.genre}), {what}, {args.mode}: "
              f"{info.region.start_s:.2f}-{info.region.end_s:.2f} s, {info.region.low_hz:.0f}-{info.region.high_hz:.0f} Hz, "
              f"gain {info.gain_db:+.1f} dB" + (f", {record['band_share']:.0%} of its energy inside the band"
                                                if args.mode == "solo" else ""))
    if info.fallback:
        print(f"whypop listen: warning: {info.fallback}", file=sys.stderr)
    return 0


def _placed(store, extraction_id: int | None, concept_id: int, track: str | None = None, upload: str | None = None):
    """The concept's placed regions in a song that is not a discovery song (the per-song explanation)."""
    import pipelines.explain as pe
    from whypop.cli import ProgressBars

    with ProgressBars() as bars:
        if upload is not None:
            eid = pe.resolve_extraction(store, extraction_id)
            if pe.cached_upload(store, upload, eid) is not None:
                return pe.upload_placed_mask(store, upload, eid, concept_id)
            return pe.upload_placed_mask(store, upload, eid, concept_id, pe.context(store, eid, progress=bars), bars)
        return pe.track_placed_mask(pe.context(store, extraction_id, progress=bars), track, concept_id, bars)


def _band_share_of(path: Path, info, band_share) -> float:
    """Share of the written clip's energy inside the region's Hz range (read back from the file)."""
    import soundfile as sf

    samples, rate = sf.read(str(path), dtype="float32")
    return round(band_share(samples, rate, info.region.low_hz, info.region.high_hz), 4)
