"""The character vocabulary: the competition's 59-character map plus the decoder's special ids.

This module is the only place that knows the special ids. The ids 0..58 come from the real
`character_to_prediction_index.json` (shipped in `asl_keras/resources`); the decoder appends
PAD, SOS, EOS and the decoder-input mask token, as the 1st-place solution does.
"""

from __future__ import annotations

import json

import numpy as np

from asl_keras import resources

with resources.path("character_to_prediction_index.json").open("r", encoding="utf-8") as _f:
    CHAR_TO_ID: dict[str, int] = json.load(_f)
ID_TO_CHAR: dict[int, str] = {i: c for c, i in CHAR_TO_ID.items()}

NUM_CHARS = len(CHAR_TO_ID)  # 59: what the competition scorer maps through
PAD = NUM_CHARS  # 59
SOS = NUM_CHARS + 1  # 60
EOS = NUM_CHARS + 2  # 61
DECODER_MASK = NUM_CHARS + 3  # 62: replaces decoder-input tokens in training only
VOCAB_SIZE = NUM_CHARS + 4  # 63: decoder embedding and head size
CTC_BLANK = NUM_CHARS  # 59: the blank of the optional CTC head (characters 0..58 + blank)

MAX_PHRASE_LEN = 31  # longest phrase of the competition train set
LABEL_LEN = MAX_PHRASE_LEN + 2  # 33: the reference's `max_phrase` (chars + EOS, padded)

DUMMY_PHRASE = "2 a-e -aroe"  # constant answer for low-confidence or very short clips


class VocabularyError(ValueError):
    """A phrase that cannot be encoded with the competition character map."""


def invalid_characters(phrase: str) -> list[str]:
    """Characters of `phrase` that are not in the 59-character map, in order of appearance."""
    return sorted({c for c in phrase if c not in CHAR_TO_ID}, key=phrase.index)


def encode(phrase: str) -> np.ndarray:
    """Character ids of `phrase` (int32, no specials). Raises VocabularyError on unknown chars."""
    bad = invalid_characters(phrase)
    if bad:
        raise VocabularyError(f"phrase {phrase!r} has characters outside the map: {bad}")
    return np.asarray([CHAR_TO_ID[c] for c in phrase], dtype=np.int32)


def to_labels(ids: np.ndarray, length: int = LABEL_LEN) -> np.ndarray:
    """Decoder targets as the reference builds them: ids[:length-1] + EOS, padded with PAD."""
    ids = np.asarray(ids, dtype=np.int32)[: length - 1]
    out = np.full(length, PAD, dtype=np.int32)
    out[: len(ids)] = ids
    out[len(ids)] = EOS
    return out


def decode(ids) -> str:
    """Text of a token sequence: stops at the first EOS, ids outside the 59-char map give ""."""
    chars = []
    for i in np.asarray(ids).tolist():
        if i == EOS:
            break
        chars.append(ID_TO_CHAR.get(int(i), ""))
    return "".join(chars)
