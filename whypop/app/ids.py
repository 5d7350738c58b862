"""Component ids: dictionaries ``{"whypop": panel, "part": part}`` (the All-in-One convention).

One helper per panel, so a typo is a NameError rather than a silently dead callback.
Elements that ``assets/whypop.js`` finds in the page carry a CSS class instead (below).
"""

from __future__ import annotations

AUDIO_CLASS = "whypop-audio"  # the <audio> element of panel 5
SONG_GRAPH_CLASS = "whypop-song-graph"  # the dcc.Graph of panel 5
EXAMPLE_AUDIO_CLASS = "whypop-example-audio"  # the <audio> element of panel 3
PLAY_CLASS = "whypop-play"  # an example's play button (data-src: its solo clip)
PLAY_ALL_CLASS = "whypop-play-all"  # panel 3's "play all"


def _id(panel: str, part: str) -> dict[str, str]:
    return {"whypop": panel, "part": part}


def links(part: str) -> dict[str, str]:
    """Shared state: location, extraction / concept / song stores, similarity lists."""
    return _id("links", part)


def header(part: str) -> dict[str, str]:
    return _id("header", part)


def importance(part: str) -> dict[str, str]:
    """Panel 1: concept importance by genre."""
    return _id("importance", part)


def clusters(part: str) -> dict[str, str]:
    """Panel 2: the concept map."""
    return _id("clusters", part)


def examples(part: str) -> dict[str, str]:
    """Panel 3: concept images."""
    return _id("examples", part)


def radar(part: str) -> dict[str, str]:
    """Panel 4: human-understandable features."""
    return _id("radar", part)


def song(part: str) -> dict[str, str]:
    """Panel 5: concepts within a song."""
    return _id("song", part)


def jobs(part: str) -> dict[str, str]:
    """The re-extraction form and its background job (whypop.app.reextract)."""
    return _id("jobs", part)
