"""asl-keras: fingerspelling recognition from MediaPipe landmarks, in TensorFlow/Keras."""

__version__ = "0.1.0"
