"""The one parser of record ids (extractions, concepts, ranks) coming from callers and URLs."""

from __future__ import annotations

import numbers

from whypop.errors import NotFound

MAX_DIGITS = 18  # beyond this a decimal string is no id SQLite can hold
MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger int is no stored id either
MAX_TRACK_ID = 256  # characters; longer strings are no track id of any collection


def parse_id(value: object, what: str = "") -> int:
    """A non-negative integer id; NotFound naming ``what`` for anything else.

    Accepts integers (not booleans) in SQLite's range and plain ASCII decimal strings;
    refuses ``"1e3"``, ``"-1"``, ``" 1"``, ``"١"``, floats and ``2**63``. The message
    quotes at most 40 characters of the value (errors never echo a whole request).
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= int(value) <= MAX_ID:
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) <= MAX_DIGITS:
        return int(value)
    raise NotFound(f"unknown {what + ' ' if what else ''}id {short(value)}")


def is_track_id(value: object) -> bool:
    """Whether ``value`` could be a track id of some collection: a non-empty string of plausible length."""
    return isinstance(value, str) and 0 < len(value) <= MAX_TRACK_ID


def short(value: object, n: int = 40) -> str:
    """repr of a caller's value, cut to ``n`` characters."""
    text = repr(value)
    return text if len(text) <= n else text[: n - 1] + "…"
