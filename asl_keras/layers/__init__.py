"""Keras layers: feature extractors, attention, Squeezeformer and Zipformer blocks, decoder."""
