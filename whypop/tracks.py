"""The records a collection is made of: tracks and the demo's planted regions.

Collection readers (:mod:`whypop.datasets`) build them, the run store
(:mod:`whypop.store`) keeps them; neither owns the type.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Track:
    track_id: str
    genre: str
    split: str
    source: str
    title: str = ""
    artist: str = ""
    status: str = "pending"
    error: str | None = None
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    spectrogram: str | None = None
    prepared_at: float | None = None

    @property
    def name(self) -> str:
        """A display name: 'Artist - Title' when known, the id otherwise."""
        if self.title:
            return f"{self.artist} - {self.title}" if self.artist else self.title
        return self.track_id


@dataclass(frozen=True)
class PlantedRegion:
    track_id: str
    kind: str
    label: str
    t0: float
    t1: float
    f0: float
    f1: float
