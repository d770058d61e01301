"""Frame masks: `[B, T]`, 1 for a real frame and 0 for padding, next to `[B, T, D]` features.

The home of the padding primitive that the conv module, both encoder blocks and the stacked
Zipformer encoder share.
"""

from __future__ import annotations

from keras import ops


def zero_pads(x, frame_mask):
    """Set padded frames of `[B, T, D]` to 0."""
    return ops.where(ops.cast(frame_mask, "bool")[..., None], x, ops.zeros_like(x))
