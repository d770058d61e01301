"""Encoder side: landmark embedding (feature extractors) and the block stacks.

`LandmarkEmbedding`: cfg_2 sums a feature extractor over all 130 globally normalised landmarks
and the concatenation of four part extractors (left hand, right hand, face, pose) over the
part-normalised copy, each of width dim/4; cfg_1 uses the single all-landmark extractor.
`SqueezeformerEncoder`: N identical `SqueezeformerBlock`s at full time resolution.
`ZipformerEncoder`: N `ZipformerBlock`s; the training step reaches every scheduled value
(bypass clamps, skip rates) through `call(..., step=optimizer.iterations)`.
Shapes: landmarks `[B, T, 130, 3]`, frame mask `[B, T]` -> `[B, T, D]`.
"""

from __future__ import annotations

import keras
from keras import ops

from asl_keras.layers.feature_extractor import PARTS, LandmarkFeatureExtractor, PartNormalization
from asl_keras.layers.squeezeformer import SqueezeformerBlock
from asl_keras.layers.zipformer import ZipformerBlock


@keras.saving.register_keras_serializable(package="asl_keras")
class LandmarkEmbedding(keras.layers.Layer):
    def __init__(self, dim: int, parts: bool = True, **kwargs):
        super().__init__(**kwargs)
        if parts and dim % len(PARTS):
            raise ValueError(f"dim must be divisible by {len(PARTS)} with part extractors, "
                             f"got {dim}")
        self.dim, self.parts = dim, parts
        p = dict(dtype=self.dtype_policy)
        self.all = LandmarkFeatureExtractor(dim, name="feature_extractor", **p)
        self.part_norm = PartNormalization(**p) if parts else None
        self.part_extractors = [LandmarkFeatureExtractor(dim // len(PARTS),
                                                         name=f"feature_extractor_{name}", **p)
                                for name in PARTS] if parts else []

    def build(self, input_shape):
        self.all.build(input_shape)
        for fe, idx in zip(self.part_extractors, PARTS.values(), strict=False):
            fe.build((*input_shape[:2], len(idx), 3))

    def call(self, x, frame_mask, training=False):
        h = self.all(x, frame_mask, training=training)
        if not self.parts:
            return h
        xp = self.part_norm(x)
        feats = [fe(ops.take(xp, idx, axis=2), frame_mask, training=training)
                 for fe, idx in zip(self.part_extractors, PARTS.values(), strict=True)]
        return h + ops.concatenate(feats, axis=-1)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "parts": self.parts}


class _BlockStack(keras.layers.Layer):
    """`blocks` identical blocks of `block_class` built from `settings`, applied in order."""

    block_class: type[keras.layers.Layer]

    def __init__(self, blocks: int, settings: dict, **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.blocks = [self.block_class(name=f"block_{i}", dtype=self.dtype_policy, **settings)
                       for i in range(blocks)]

    def build(self, input_shape):
        for block in self.blocks:
            block.build(input_shape)

    def get_config(self):
        return {**super().get_config(), **self.settings, "blocks": len(self.blocks)}


@keras.saving.register_keras_serializable(package="asl_keras")
class SqueezeformerEncoder(_BlockStack):
    block_class = SqueezeformerBlock

    def __init__(self, dim: int, blocks: int, heads: int = 4, attention: str = "rotary",
                 ff_expansion: int = 1, conv_expansion: int = 2, kernel_size: int = 51,
                 dropout: float = 0.1, zero_glu_pads: bool = False, **kwargs):
        super().__init__(blocks, dict(dim=dim, heads=heads, attention=attention,
                                      ff_expansion=ff_expansion, conv_expansion=conv_expansion,
                                      kernel_size=kernel_size, dropout=dropout,
                                      zero_glu_pads=zero_glu_pads), **kwargs)

    def call(self, x, frame_mask, training=False, step=None):
        """`step` is accepted for a common interface; nothing here is scheduled."""
        for block in self.blocks:
            x = block(x, frame_mask, training=training)
        return x


@keras.saving.register_keras_serializable(package="asl_keras")
class ZipformerEncoder(_BlockStack):
    block_class = ZipformerBlock

    def __init__(self, dim: int, blocks: int, heads: int = 4, ffn_dims=(156, 208, 260),
                 kernel_size: int = 51, dropout: float = 0.1, **kwargs):
        super().__init__(blocks, dict(dim=dim, heads=heads, ffn_dims=tuple(ffn_dims),
                                      kernel_size=kernel_size, dropout=dropout), **kwargs)

    def call(self, x, frame_mask, training=False, step=None):
        for block in self.blocks:
            x = block(x, frame_mask, step=step, training=training)
        return x
