"""Our NAB scorer against NAB's published per-file results."""

import pytest

from bench import nab
from bench.quality import nab_eval
from devices import labels


@pytest.fixture(scope="module")
def check():
    try:
        nab_dir = labels.resolve_data_dir() / "nab"
    except FileNotFoundError as error:
        pytest.skip(f"labelled recordings not available: {error}")
    corpus = nab_eval.load_corpus(nab_dir)
    profiles = nab.load_profiles(nab_dir / "scoring_profiles.json")
    published = nab_eval.read_published(nab_dir)
    return nab_eval.check_scorer(corpus, profiles, published)


def test_published_row_counts_match(check):
    assert check["published_rows"] > 0
    assert check["count_mismatches"] == []


def test_null_detector_scores_match(check):
    assert check["null_rows"] > 0
    assert check["null_max_diff"] < 1e-9


def test_series_without_windows_match(check):
    assert check["no_window_rows"] > 0
    assert check["no_window_max_diff"] < 1e-9


def test_single_detection_lands_on_whole_row(check):
    # The published rows do not list detections, but inverting our TP
    # reward must give a whole row of the window.
    assert check["single_detection_rows"] > 0
    assert check["single_detection_max_row_offset"] < 1e-6
