"""Typed results: one JSON round trip each, stored keys kept, unknown keys carried along."""

from __future__ import annotations

import json

from whypop.ace.ranking import Candidate, top_concept
from whypop.progress import ProgressEvent
from whypop.results import ConceptRecord, ExtractionSummary, GenreSummary, JobProgress, Reliance

STORED = {
    "layer": "layer4.1.conv2", "patch_mode": "faithful", "cav_mode": "fast", "tcav_gradient": "logit",
    "genres": {"Kick": {
        "discovery": ["a", "b"], "score": ["c"], "n_patches": 40, "n_concepts": 2, "n_significant": 1,
        "chance": 0.06, "null_mean": 0.5, "null_cav_accuracy": 0.5, "top_concept": 1, "top_concept_any": 0,
        "overlap": 0.6, "reliance": {"p_full": 0.97, "p_signature_hidden": 0.69, "relies_on_signature": False,
                                     "rule": "drop >= 0.5"},
        "faithfulness": {"deletion": 0.3},  # a key added by a newer version
    }},
    "random": {"pool": 9, "experiments": 2}, "significance": {"alpha": 0.01}, "artefact": {"flagged": []},
    "concepts": [{"concept_id": 0, "black_share": 0.1, "band_share": 0.0, "signature_overlap": 0.5,
                  "artefact_overlap": None, "cav_accuracy": 0.9, "n_images": 3, "magnitude": 0.25}],
    "clusters": 3, "fill_value": 80.5, "cache": {"hits": 1, "misses": 2}, "activation_shape": [512, 7, 7],
}


def test_extraction_summary_round_trips_the_stored_json():
    summary = ExtractionSummary.from_dict(json.loads(json.dumps(STORED)))
    kick = summary.genres["Kick"]
    assert isinstance(kick, GenreSummary) and kick.discovery == ("a", "b") and kick.overlap == 0.6
    assert kick.reliance == Reliance(0.97, 0.69, False, "drop >= 0.5")
    assert summary.concept(0) == ConceptRecord(0, 0.1, 0.0, 0.5, None, 0.9, 3, 0.25)
    assert summary.discovery_songs == 2 and summary.activation_shape == (512, 7, 7)
    assert summary.to_dict() == STORED  # same keys, same values, the unknown key kept


def test_old_or_missing_summaries_read_as_empty():
    assert ExtractionSummary.from_dict(None).genres == {}
    old = ExtractionSummary.from_dict({"genres": {"Rock": {"overlap": None, "chance": None}}})
    assert old.genres["Rock"].top_concept is None and old.genres["Rock"].reliance is None


def test_job_progress_from_events_and_rows():
    p = JobProgress.from_event(ProgressEvent("extract", "activations", 120, 430, "Rock"), 0.4)
    assert p.text == "Rock: activations 120/430"
    assert JobProgress.from_row({"stage": "extract", "step": "activations", "genre": "Rock", "done": 120,
                                 "total": 430, "progress": 0.4}) == p
    assert JobProgress.from_row(p.to_dict()) == p
    assert JobProgress("done", fraction=1.0).text == "done"


def test_top_concept_rule():
    null = 0.6
    c = [
        Candidate(significant=True, tcav_mean=0.9, magnitude=0.1),
        Candidate(significant=True, tcav_mean=0.95, magnitude=0.5, dark=True),
        Candidate(significant=False, tcav_mean=1.0, magnitude=9.0),  # not significant
        Candidate(significant=True, tcav_mean=0.55, magnitude=5.0),  # below the null
        Candidate(significant=True, tcav_mean=0.8, magnitude=0.3),
    ]
    assert top_concept(c, null) == 4  # the largest magnitude among the rest, the dark one left out
    assert top_concept(c, null, exclude_dark=False) == 1
    assert top_concept(c[2:4], null) is None
    assert top_concept([Candidate(True, 0.5, 1.0)], 0.2) is None  # at 0.5 it raises nothing
