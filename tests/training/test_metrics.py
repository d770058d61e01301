import json
from pathlib import Path

import pytest

from asl_keras.training import metrics
from tests.paths import REF1ST

CASES = json.loads(Path(REF1ST, "metric_cases.json").read_text(encoding="utf-8"))


def test_official_and_reference_scores_match_the_fixture():
    truths = [c["truth"] for c in CASES["cases"]]
    preds = [c["prediction"] for c in CASES["cases"]]
    assert metrics.normalized_total(truths, preds) == pytest.approx(CASES["score_levenshtein"],
                                                                    abs=1e-6)
    assert metrics.normalized_total(truths, preds, damerau=True) == pytest.approx(
        CASES["score_damerau_levenshtein"], abs=1e-6)


def test_corpus_level_not_mean_of_pairs():
    assert metrics.normalized_total(["a", "abcdefghij"], ["", "abcdefghij"]) == pytest.approx(
        10 / 11)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 truths but 1 predictions"):
        metrics.normalized_total(["a", "b"], ["a"])
