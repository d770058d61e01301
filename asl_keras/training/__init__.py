"""Training: strategy selection, optimizers, the trainer loop, metrics, out-of-fold scores."""
