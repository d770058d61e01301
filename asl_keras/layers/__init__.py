"""Keras layers: feature extractors, attention, feed-forward, conv module, frame masking,
Squeezeformer and Zipformer blocks, schedules and constraints, downsampling, decoder, CTC.

Every layer is registered with Keras as `asl_keras>ClassName`, whichever module holds it.
"""
