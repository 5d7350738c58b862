"""The one parser of record ids (extractions, concepts, ranks) coming from callers and URLs."""

from __future__ import annotations

import numbers

from whypop.errors import NotFound

MAX_DIGITS = 18  # beyond this a decimal string is no id SQLite can hold


def parse_id(value: object, what: str = "") -> int:
    """A non-negative integer id; NotFound naming ``what`` for anything else.

    Accepts integers (not booleans) and plain ASCII decimal strings; refuses ``"1e3"``,
    ``"-1"``, ``" 1"``, ``"١"`` and floats.
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 0:
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) <= MAX_DIGITS:
        return int(value)
    raise NotFound(f"unknown {what + ' ' if what else ''}id {value!r}")
