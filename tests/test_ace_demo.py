"""Integration: ACE on the demo collection finds the planted concepts and flags the artefact.

The demo plants one signature per genre (a sound in a known band and time span) and, in
one genre, silent bands. For every genre, the most important significant concept must
sit on its signature far more than random patches of the same songs do. The extraction
also records how much the model relies on each signature (the genre's probability with
the signature hidden); with four genres one can partly be told by elimination, so that
figure is reported, not required.
"""

from __future__ import annotations

import pytest

from whypop.store import RunStore

pytestmark = pytest.mark.slow  # reads a whole demo run (built by the stages unless WHYPOP_TEST_DEMO_RUN is set)


def _summary(demo_run):
    store = RunStore(demo_run)
    ex = store.extraction()
    return store, ex, ex["summary"]


def test_top_concepts_sit_on_the_planted_signatures(demo_run):
    _, ex, summary = _summary(demo_run)
    genres = summary["genres"]
    assert len(genres) == 4
    for g, v in genres.items():
        assert v["overlap"] is not None, f"{g}: no significant concept"
        assert v["overlap"] > 3 * v["chance"], f"{g}: overlap {v['overlap']:.2f}, chance {v['chance']:.2f}"
        assert 0 <= v["reliance"]["p_signature_hidden"] <= 1


def test_the_planted_artefact_is_flagged_and_nothing_else(demo_run):
    store, ex, summary = _summary(demo_run)
    artefact = summary["artefact"]
    assert artefact["flagged_on_planted"], artefact
    for f in artefact["flagged"]:  # no music flagged as silence
        assert f["planted_overlap"] is not None and f["planted_overlap"] >= 0.5, f
        concept = store.concept(ex["extraction_id"], f["concept_id"])
        assert any(x["flag"] in ("augmentation-band", "silence") for x in concept["flags"])


def test_status_reports_overlap_and_chance(demo_run):
    from whypop.commands.status import format_status

    text = format_status(RunStore(demo_run).status())
    assert text.count("top concept overlaps planted signature") == 4
    assert text.count("with it hidden") == 4  # the reliance figures
