"""The competition metric and the reference's variant, plus the dummy-phrase rule.

Normalized total Levenshtein (official): `(N - D) / N` with N the total characters of all
ground-truth phrases and D the summed Levenshtein distances (rapidfuzz). The reference's CV used
rapidfuzz's unrestricted Damerau-Levenshtein instead (transpositions cost 1), which is equal or
optimistic; both are reported.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz.distance import DamerauLevenshtein, Levenshtein

from asl_keras import vocab

MIN_FRAMES = 15  # clips shorter than this get the dummy phrase
MIN_CONFIDENCE = 0.15  # the reference's pp_min_conf


def normalized_total(truths: Sequence[str], predictions: Sequence[str],
                     damerau: bool = False) -> float:
    """Corpus-level `(N - D) / N` (can be negative for very wrong predictions)."""
    if len(truths) != len(predictions):
        raise ValueError(f"{len(truths)} truths but {len(predictions)} predictions")
    distance = DamerauLevenshtein.distance if damerau else Levenshtein.distance
    n = sum(len(t) for t in truths)
    d = sum(distance(t, p) for t, p in zip(truths, predictions, strict=True))
    return (n - d) / max(n, 1)


def postprocess(prediction: str, n_frames: int, confidence: float | None = None) -> str:
    """The reference's pp_2 (pp_1 without a confidence): short or unsure clips -> dummy phrase.

    Also an empty prediction -> dummy phrase: the TFLite output must have at least one row, and
    scoring the Keras model with the same rule keeps the two scores comparable.
    """
    if n_frames < MIN_FRAMES or (confidence is not None and confidence < MIN_CONFIDENCE):
        return vocab.DUMMY_PHRASE
    return prediction or vocab.DUMMY_PHRASE
