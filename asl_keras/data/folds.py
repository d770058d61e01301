"""Cross-validation folds grouped by signer.

The hidden test set has signers unseen in training, so folds are groups of `participant_id`.
Assignment is greedy and deterministic: participants by descending competition-train sequence
count (ties: lower id first) each go to the fold with the fewest sequences so far (ties: lower
fold). Supplemental rows are never validated; they carry their signer's fold (so a held-out
signer's supplemental clips can be kept out of training) or -1 if the signer has no train rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NUM_FOLDS = 4


def assign_folds(meta: pd.DataFrame, num_folds: int = NUM_FOLDS) -> pd.Series:
    """Fold per metadata row (int64, aligned with `meta.index`)."""
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {num_folds}")
    train = meta[~meta["is_supplemental"]]
    counts = train.groupby("participant_id").size()
    order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    totals = np.zeros(num_folds, dtype=np.int64)
    fold_of: dict[int, int] = {}
    for participant, n in order:
        k = int(np.argmin(totals))  # argmin returns the lowest index among ties
        fold_of[int(participant)] = k
        totals[k] += n
    return meta["participant_id"].map(fold_of).fillna(-1).astype(np.int64)
