"""What a collection is: sample rates, durations and channels of its prepared tracks, and what follows.

:func:`summarize` counts the tracks' source sample rates, durations (in bins relative to
the window ``audio.duration``) and channels, per genre and split; :func:`check` turns the
counts into warnings that name the fix:

- sources sampled below ``audio.sample_rate`` leave the mel bands above their Nyquist
  frequency empty (a black band across the top of every image);
- clips shorter than the window are padded (silence, the thesis, or a repeat);
- a genre with fewer than :data:`MIN_PER_GENRE` clips cannot fill the three splits
  training needs (training, validation, test), whatever ``dataset.split`` says.

Track records in (anything with ``genre``, ``split``, ``sample_rate``, ``duration``,
``channels``), a typed :class:`CollectionSummary` out; no store, no files.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Protocol, Sequence

from whypop.config import AudioConfig

MIN_PER_GENRE = 3  # one clip each for training, validation and test
SPLITS = ("training", "validation", "test")


class TrackRecord(Protocol):
    genre: str
    split: str
    sample_rate: int | None
    duration: float | None
    channels: int | None


@dataclass
class CollectionSummary:
    """Counts over a run's prepared tracks (histograms as {label: count})."""

    tracks: int
    sample_rates: dict[str, int]  # "22050" -> tracks
    channels: dict[str, int]  # "1" -> tracks
    durations: dict[str, int]  # "15-20 s" -> tracks, in bins of the window
    window: float  # audio.duration, seconds
    target_rate: int  # audio.sample_rate
    fmax: float  # top of the mel range, Hz
    pad: str  # audio.pad
    shortest: float | None
    longest: float | None
    short: int  # tracks shorter than the window
    below_rate: int  # tracks whose Nyquist is below the mel range's top
    common_nyquist: float | None  # the lowest source Nyquist, Hz
    empty_top_rows: int  # image rows above the lowest source Nyquist (0 when none)
    padding_from: int | None  # image column where the shortest clip's padding starts (silence padding)
    per_genre: dict[str, dict[str, int]]  # genre -> split -> tracks
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CollectionSummary":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})

    def lines(self) -> list[str]:
        """A short human-readable summary (for `whypop prepare` and `whypop status`)."""
        rates = ", ".join(f"{int(r) / 1000:g} kHz: {n}" for r, n in sorted(self.sample_rates.items(), key=lambda kv: int(kv[0])))
        chans = ", ".join(f"{'mono' if c == '1' else 'stereo' if c == '2' else c + ' channels'}: {n}"
                          for c, n in sorted(self.channels.items(), key=lambda kv: int(kv[0])))
        durs = ", ".join(f"{k}: {n}" for k, n in self.durations.items() if n)
        out = [f"collection: {self.tracks} tracks; sample rate {rates}; {chans}",
               f"  durations ({self.window:g} s window): {durs}"]
        if self.below_rate:
            out.append(f"  mel range to {self.fmax / 1000:g} kHz: above the sources' Nyquist "
                       f"({(self.common_nyquist or 0) / 1000:g} kHz) the top {self.empty_top_rows} image rows are empty")
        if self.short:
            pad = ("padding with silence" if self.pad == "silence" else "padding by repeating the clip")
            out.append(f"  {self.short} of {self.tracks} clips shorter than the window: {pad}"
                       + (f" from image column {self.padding_from} of the shortest" if self.padding_from is not None else ""))
        return out


def duration_bins(window: float) -> list[tuple[float, float, str]]:
    """Bins of 5 s up to the window (the last one holds the clips that fill it)."""
    edges = [0.0]
    while edges[-1] + 5 < window - 1e-9:
        edges.append(edges[-1] + 5)
    bins = [(lo, hi, f"{lo:g}-{hi:g} s") for lo, hi in zip(edges, edges[1:] + [window])]
    return bins + [(window, float("inf"), f"full {window:g} s")]


def summarize(tracks: Sequence[TrackRecord], audio: AudioConfig, split_shares: Sequence[float] | None = None,
              fixed_split: bool = False) -> CollectionSummary:
    """Count the tracks and check them (see :func:`check`)."""
    from whypop.geometry import empty_top_rows, first_padding_column, fmax_hz

    rates = Counter(str(int(t.sample_rate)) for t in tracks if t.sample_rate)
    chans = Counter(str(int(t.channels)) for t in tracks if t.channels)
    durations = [float(t.duration) for t in tracks if t.duration]
    bins = duration_bins(audio.duration)
    dur_counts = {label: 0 for _, _, label in bins}
    full = audio.duration - 1e-3  # decoding stops at the window: a full clip reads as exactly it
    for d in durations:
        for lo, hi, label in bins:
            if (d >= full and hi == float("inf")) or (lo <= d < hi and d < full):
                dur_counts[label] += 1
                break
    top = fmax_hz(audio)
    low = [int(r) for r in rates if int(r) / 2 < top]
    nyquist = min(int(r) for r in rates) / 2 if rates else None
    short = [d for d in durations if d < full]
    per_genre: dict[str, dict[str, int]] = {}
    for t in tracks:
        per_genre.setdefault(t.genre, {s: 0 for s in SPLITS})
        per_genre[t.genre][t.split] = per_genre[t.genre].get(t.split, 0) + 1
    out = CollectionSummary(
        tracks=len(tracks), sample_rates=dict(sorted(rates.items(), key=lambda kv: int(kv[0]))),
        channels=dict(sorted(chans.items())), durations=dur_counts, window=float(audio.duration),
        target_rate=int(audio.sample_rate), fmax=float(top), pad=audio.pad,
        shortest=min(durations) if durations else None, longest=max(durations) if durations else None,
        short=len(short), below_rate=sum(rates[str(r)] for r in low),
        common_nyquist=nyquist, empty_top_rows=empty_top_rows(min(low), audio) if low else 0,
        padding_from=(first_padding_column(min(short), audio) if short and audio.pad == "silence" else None),
        per_genre=dict(sorted(per_genre.items())),
    )
    out.warnings = check(out, split_shares, fixed_split)
    return out


def check(s: CollectionSummary, split_shares: Sequence[float] | None = None, fixed_split: bool = False) -> list[str]:
    """Warnings about the collection, each naming the fix."""
    out = []
    if s.below_rate:
        low = ", ".join(f"{int(r) / 1000:g} kHz" for r in s.sample_rates if int(r) / 2 < s.fmax)
        out.append(
            f"{s.below_rate} of {s.tracks} clips are sampled at {low}, below what the mel range needs "
            f"(up to {s.fmax / 1000:g} kHz at audio.sample_rate = {s.target_rate}): the bands above "
            f"{(s.common_nyquist or 0) / 1000:g} kHz are empty, a black band over the top {s.empty_top_rows} image "
            f"rows that concepts can latch onto. Fix: prepare a new run with audio.fmax = \"auto\" (the mel range "
            f"follows the sources) or audio.sample_rate = {int(2 * (s.common_nyquist or 0))}, e.g. --config gtzan"
        )
    if s.short:
        span = (f"{s.shortest:.1f}-{s.longest if s.longest < s.window else s.window:.1f} s"
                if s.shortest is not None and s.longest is not None else "")
        what = "the clip repeated to fill the window"
        if s.pad == "silence":
            what = "silence padding after the song ends" + (
                f" (from image column {s.padding_from} for the shortest)" if s.padding_from is not None else "")
        out.append(
            f"{s.short} of {s.tracks} clips are shorter than the {s.window:g} s window ({span}): the rest of each "
            f"image is {what}. Fix: audio.duration = {int(s.shortest or 0)} (the shortest clip), or audio.pad = "
            f"\"repeat\"; with silence, extract.skip_empty (on by default) keeps concepts off the padding"
        )
    small = {g: sum(splits.values()) for g, splits in s.per_genre.items() if sum(splits.values()) < MIN_PER_GENRE}
    missing = sorted({name for name in SPLITS if not any(sp.get(name) for sp in s.per_genre.values())})
    if s.per_genre and (small or missing):
        where = ", ".join(f"{g} {n}" for g, n in sorted(small.items())) if small else ""
        fix = ("the collection brings its own split" if fixed_split
               else f"dataset.split = {list(split_shares)} cannot help" if split_shares else "no split setting can help")
        out.append(
            f"training needs the three splits (training, validation, test) and so at least {MIN_PER_GENRE} clips per "
            f"genre" + (f"; too few: {where}" if where else "")
            + (f"; empty split(s): {', '.join(missing)}" if missing else "")
            + f" ({fix}). Fix: add clips to those genres, or leave them out of the collection"
        )
    return out
