"""The competition metric and the reference's variant.

Normalized total Levenshtein (official): `(N - D) / N` with N the total characters of all
ground-truth phrases and D the summed Levenshtein distances (rapidfuzz). The reference's CV used
rapidfuzz's unrestricted Damerau-Levenshtein instead (transpositions cost 1), which is equal or
optimistic; both are reported. The dummy-phrase rule applied before scoring lives in
`asl_keras.inference`.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz.distance import DamerauLevenshtein, Levenshtein


def normalized_total(truths: Sequence[str], predictions: Sequence[str],
                     damerau: bool = False) -> float:
    """Corpus-level `(N - D) / N` (can be negative for very wrong predictions)."""
    if len(truths) != len(predictions):
        raise ValueError(f"{len(truths)} truths but {len(predictions)} predictions")
    distance = DamerauLevenshtein.distance if damerau else Levenshtein.distance
    n = sum(len(t) for t in truths)
    d = sum(distance(t, p) for t, p in zip(truths, predictions, strict=True))
    return (n - d) / max(n, 1)

