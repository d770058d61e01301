"""The dummy-phrase rule of `asl_keras.inference`."""

from asl_keras import inference, vocab


def test_short_clips_get_the_dummy_phrase():
    assert inference.postprocess("abc", inference.MIN_FRAMES - 1) == vocab.DUMMY_PHRASE
    assert inference.postprocess("abc", inference.MIN_FRAMES) == "abc"


def test_unsure_clips_get_the_dummy_phrase():
    assert inference.postprocess("abc", 100, confidence=0.1) == vocab.DUMMY_PHRASE
    assert inference.postprocess("abc", 100, confidence=0.5) == "abc"
    assert inference.postprocess("abc", 100, confidence=None) == "abc"  # no confidence head


def test_an_empty_decode_gets_the_dummy_phrase():
    assert inference.postprocess("", 100, confidence=0.5) == vocab.DUMMY_PHRASE


def test_the_thresholds_are_the_first_places():
    assert (inference.MIN_FRAMES, inference.MIN_CONFIDENCE) == (15, 0.15)
