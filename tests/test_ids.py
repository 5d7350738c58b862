"""The one id parser: what URLs, callbacks and store calls may pass as an id."""

from __future__ import annotations

import numpy as np
import pytest

from whypop.errors import NotFound
from whypop.ids import parse_id


@pytest.mark.parametrize("value, expected", [(0, 0), (7, 7), ("12", 12), (np.int64(3), 3)])
def test_ids_that_parse(value, expected):
    assert parse_id(value) == expected


@pytest.mark.parametrize("value", ["1e3", "-1", " 1", "1 ", "", "١", "1" * 19, -1, 1.0, True, None, [1]])
def test_anything_else_is_not_found_naming_what(value):
    with pytest.raises(NotFound, match="unknown concept id"):
        parse_id(value, "concept")
