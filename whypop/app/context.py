"""What every panel module receives: the data, URL building under the app's prefix, options."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from whypop.app.data import AppData
from whypop.errors import NotFound
from whypop.ids import is_track_id, parse_id


@dataclass(frozen=True)
class AppContext:
    data: AppData
    requests_prefix: str  # what the browser uses, e.g. "/" or "/portal/whypop/"
    read_only: bool = True
    allow_upload: bool = False  # song uploads to explain (always in writable mode; serve.allow_upload when read-only)
    upload_max_mb: float = 30.0

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

    def listen_url(self, extraction_id: int, concept_id: int, rank: int, mode: str = "solo") -> str:
        """A concept example as sound (``mode`` solo or without)."""
        return self.url(f"listen/{int(extraction_id)}/{int(concept_id)}/{int(rank)}/{quote(mode, safe='')}.wav")

    def listen_song_url(self, extraction_id: int, concept_id: int, track_id: str, mode: str = "solo") -> str:
        """A concept's regions within a song as sound, over the song's whole analysed window."""
        return self.url(f"listen/{int(extraction_id)}/{int(concept_id)}/song/{quote(track_id, safe='')}/"
                        f"{quote(mode, safe='')}.wav")

    def listen_upload_url(self, extraction_id: int, concept_id: int, digest: str, mode: str = "solo") -> str:
        """A concept's placed regions within an uploaded song as sound."""
        return self.url(f"listen/{int(extraction_id)}/{int(concept_id)}/upload/{quote(digest, safe='')}/"
                        f"{quote(mode, safe='')}.wav")


def as_id(value: object) -> int | None:
    """A callback input that should be an id (:func:`whypop.ids.parse_id`), else None (never raises)."""
    try:
        return parse_id(value)
    except NotFound:
        return None


def as_track(value: object) -> str | None:
    """A callback input that should be a track id: a string of plausible length, else None."""
    return value if is_track_id(value) else None  # type: ignore[return-value]
