"""Models: encoders, the recognizer, losses."""
