import numpy as np
import pytest

from asl_keras import vocab


def test_real_map_and_special_ids():
    assert vocab.NUM_CHARS == 59
    assert (vocab.CHAR_TO_ID[" "], vocab.CHAR_TO_ID["a"], vocab.CHAR_TO_ID["~"]) == (0, 32, 58)
    assert (vocab.PAD, vocab.SOS, vocab.EOS, vocab.DECODER_MASK, vocab.VOCAB_SIZE) == (
        59, 60, 61, 62, 63)


def test_encode_decode_round_trip():
    phrase = "fysiotherapiedewaard.nl/585685"
    ids = vocab.encode(phrase)
    assert ids.dtype == np.int32 and len(ids) == len(phrase)
    assert vocab.decode(vocab.to_labels(ids)) == phrase


def test_labels_truncate_append_eos_and_pad():
    labels = vocab.to_labels(vocab.encode("abc"))
    assert labels.shape == (vocab.LABEL_LEN,)
    assert labels[:4].tolist() == [32, 33, 34, vocab.EOS]
    assert (labels[4:] == vocab.PAD).all()
    long = vocab.to_labels(np.arange(40) % 59)
    assert long[vocab.LABEL_LEN - 1] == vocab.EOS and len(long) == vocab.LABEL_LEN


def test_decode_maps_specials_to_empty_and_stops_at_eos():
    assert vocab.decode([vocab.SOS, 32, vocab.PAD, 33, vocab.EOS, 34]) == "ab"


def test_unknown_characters_are_named():
    with pytest.raises(vocab.VocabularyError, match=r"\['A', '\^'\]"):
        vocab.encode("Ab^c")
