"""What every panel module receives: the data, URL building under the app's prefix, options."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from whypop.app.data import AppData
from whypop.store import MAX_ID, MAX_TRACK_ID


@dataclass(frozen=True)
class AppContext:
    data: AppData
    requests_prefix: str  # what the browser uses, e.g. "/" or "/portal/whypop/"
    read_only: bool = True

    def url(self, path: str) -> str:
        """A URL under the app's requests prefix (``path`` without a leading slash)."""
        return self.requests_prefix + path.lstrip("/")

    def spec_url(self, track_id: str) -> str:
        return self.url(f"img/spec/{quote(track_id, safe='')}.png")

    def patch_url(self, extraction_id: int, concept_id: int, rank: int) -> str:
        return self.url(f"img/patch/{int(extraction_id)}/{int(concept_id)}/{int(rank)}.png")

    def context_url(self, extraction_id: int, concept_id: int, rank: int) -> str:
        return self.url(f"img/context/{int(extraction_id)}/{int(concept_id)}/{int(rank)}.png")

    def song_image_url(self, extraction_id: int, track_id: str, concept_id: int | None = None) -> str:
        """The song view's image; with ``concept_id``, only that concept's patches in colour."""
        url = self.url(f"img/song/{int(extraction_id)}/{quote(track_id, safe='')}.png")
        return url if concept_id is None else f"{url}?concept={int(concept_id)}"

    def audio_url(self, track_id: str) -> str:
        return self.url(f"audio/{quote(track_id, safe='')}")


def as_id(value: object) -> int | None:
    """A callback input that should be an integer id: the int in SQLite's range, else None (never raises)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID
    return value if ok else None  # type: ignore[return-value]


def as_track(value: object) -> str | None:
    """A callback input that should be a track id: a string of plausible length, else None."""
    return value if isinstance(value, str) and 0 < len(value) <= MAX_TRACK_ID else None
