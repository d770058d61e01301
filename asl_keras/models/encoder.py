"""Encoder side: landmark embedding (feature extractors) and the block stacks.

`LandmarkEmbedding`: cfg_2 sums a feature extractor over all 130 globally normalised landmarks
and the concatenation of four part extractors (left hand, right hand, face, pose) over the
part-normalised copy, each of width dim/4; cfg_1 uses the single all-landmark extractor.
`SqueezeformerEncoder`: N identical `SqueezeformerBlock`s at full time resolution.
`ZipformerEncoder`: `ZipformerBlock`s, optionally in stacks at lower frame rates; the optimizer's
update count reaches every scheduled value (bypass scale bounds, skip rates, constraint
probabilities) through `call(..., step=optimizer.iterations)`.
Shapes: landmarks `[B, T, 130, 3]`, frame mask `[B, T]` -> `[B, T, D]`.
"""

from __future__ import annotations

import keras
from keras import ops

from asl_keras.layers.downsample import SimpleDownsample, upsample
from asl_keras.layers.feature_extractor import (
    PARTS,
    DominantHandFeatures,
    LandmarkFeatureExtractor,
    PartNormalization,
)
from asl_keras.layers.masking import zero_pads
from asl_keras.layers.squeezeformer import SqueezeformerBlock
from asl_keras.layers.zipformer import Bypass, ZipformerBlock


@keras.saving.register_keras_serializable(package="asl_keras")
class LandmarkEmbedding(keras.layers.Layer):
    """The 1st-place input side (`mdl_2_pt.py`, cfg_2; `mdl_1_pt.py`, cfg_1): landmarks ->
    per-frame features.

    cfg_2 sums a `LandmarkFeatureExtractor` over all 130 globally normalised landmarks and the
    concatenation of four part extractors (left hand, right hand, face, pose) over the
    `PartNormalization` copy, each of width dim/4; cfg_1 uses the single all-landmark extractor
    (docs/reference.md, 'Input side'). No input dropout and no positional encoding.

    Args:
        dim: int, output width; divisible by 4 with `parts`.
        parts: bool, add the four part extractors (cfg_2). Defaults to `True`.
        hand_features: bool, add `DominantHandFeatures` (not in the reference). Defaults to
            `False`.

    Call arguments:
        x: float tensor `[B, T, 130, 3]`, globally normalised landmarks.
        frame_mask: `[B, T]`, 1 = real frame, 0 = padding.
        training: bool, BatchNorms from batch statistics.

    Returns:
        `[B, T, dim]`.
    """

    def __init__(self, dim: int, parts: bool = True, hand_features: bool = False, **kwargs):
        super().__init__(**kwargs)
        if parts and dim % len(PARTS):
            raise ValueError(f"dim must be divisible by {len(PARTS)} with part extractors, "
                             f"got {dim}")
        self.dim, self.parts, self.hand_features = dim, parts, hand_features
        p = dict(dtype=self.dtype_policy)
        self.all = LandmarkFeatureExtractor(dim, name="feature_extractor", **p)
        self.part_norm = PartNormalization(**p) if parts else None
        self.part_extractors = [LandmarkFeatureExtractor(dim // len(PARTS),
                                                         name=f"feature_extractor_{name}", **p)
                                for name in PARTS] if parts else []
        self.hand = DominantHandFeatures(dim, name="dominant_hand", **p) if hand_features else None

    def build(self, input_shape):
        self.all.build(input_shape)
        for fe, idx in zip(self.part_extractors, PARTS.values(), strict=False):
            fe.build((*input_shape[:2], len(idx), 3))
        if self.hand is not None:
            self.hand.build(input_shape)

    def call(self, x, frame_mask, training=False):
        h = self.all(x, frame_mask, training=training)
        if self.parts:
            xp = self.part_norm(x)
            feats = [fe(ops.take(xp, idx, axis=2), frame_mask, training=training)
                     for fe, idx in zip(self.part_extractors, PARTS.values(), strict=True)]
            h = h + ops.concatenate(feats, axis=-1)
        if self.hand is not None:
            h = h + self.hand(x, frame_mask)
        return h

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "parts": self.parts,
                "hand_features": self.hand_features}


class _BlockStack(keras.layers.Layer):
    """Base of the single-stack encoders: `blocks` identical blocks of `block_class` built from
    `settings`, applied in order (the 1st place's stack of encoder blocks).

    Args:
        blocks: int, number of blocks.
        settings: dict, the blocks' constructor arguments; `get_config` stores them flat.

    Call arguments:
        Those of the subclass's `call` (e.g. `SqueezeformerEncoder`).

    Returns:
        As the subclass's `call`.
    """

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
    """The 1st-place encoder: `blocks` identical `SqueezeformerBlock`s (Kim et al., 2022) at full
    time resolution (the Squeezeformer's time reduction is not used).

    Args:
        dim: int, model width.
        blocks: int, number of blocks (6 in cfg_1, 14 in cfg_2).
        heads: int, attention heads. Defaults to `4`.
        attention: str, `"rotary"` (cfg_2) or `"relative"` (cfg_1). Defaults to `"rotary"`.
        ff_expansion: int, FFN expansion. Defaults to `1`.
        conv_expansion: int, conv module expansion. Defaults to `2`.
        kernel_size: int, depthwise kernel of the conv modules. Defaults to `51`.
        dropout: float, dropout of every block. Defaults to `0.1`.
        zero_glu_pads: bool, zero padded frames after the conv modules' GLU. Defaults to
            `False` (the reference's padding leak).

    Call arguments:
        x: float tensor `[B, T, dim]`, the landmark embedding.
        frame_mask: `[B, T]`, 1 = real frame, 0 = padding.
        training: bool, dropouts on and BatchNorm from batch statistics.
        step: accepted for a common interface with `ZipformerEncoder`; nothing here is
            scheduled.

    Returns:
        `[B, T, dim]`.
    """

    block_class = SqueezeformerBlock

    def __init__(self, dim: int, blocks: int, heads: int = 4, attention: str = "rotary",
                 ff_expansion: int = 1, conv_expansion: int = 2, kernel_size: int = 51,
                 dropout: float = 0.1, zero_glu_pads: bool = False, **kwargs):
        super().__init__(blocks, dict(dim=dim, heads=heads, attention=attention,
                                      ff_expansion=ff_expansion, conv_expansion=conv_expansion,
                                      kernel_size=kernel_size, dropout=dropout,
                                      zero_glu_pads=zero_glu_pads), **kwargs)

    def call(self, x, frame_mask, training=False, step=None):
        for block in self.blocks:
            x = block(x, frame_mask, training=training)
        return x


@keras.saving.register_keras_serializable(package="asl_keras")
class ZipformerEncoder(keras.layers.Layer):
    """Zipformer blocks in stacks, each at its own frame rate and width (icefall's Zipformer2).

    A stack `(blocks, downsample, width)` with downsample d > 1 runs on `SimpleDownsample(d)`
    of its input (masks follow at every rate), is upsampled back and combined with its input by
    a Bypass. A stack of width w < dim reads the first w channels and replaces them, so the
    output carries every channel from the most recent stack that has it (icefall's
    convert_num_channels / _get_full_dim_output). FFN widths scale with w / dim. Schedule
    points are icefall's, in its batches (optimizer updates).

    Args:
        dim: int, model width (input and output).
        blocks: int, number of blocks of the default single full-rate stack; ignored when
            `stacks` is given (`get_config` then stores their total).
        heads: int, attention heads of every block. Defaults to `4`.
        ffn_dims: three ints, FFN hidden widths at width `dim`. Defaults to `(156, 208, 260)`.
        kernel_size: int, depthwise kernel of the conv modules. Defaults to `51`.
        dropout: float, dropout of every block. Defaults to `0.1`.
        stacks: `[(blocks, downsample, width), ...]` or `None`; each width <= dim and divisible
            by `heads`. Defaults to `None`: one stack of `blocks` blocks at full rate and `dim`.
        constraints: bool, add the Balancer/Whitener of each block. Defaults to `False`.
        schedules: bool; `False` freezes every schedule at the value the public fork ran with
            (skip rates 0, bypass scale_min 0; docs/zipformer.md, 'The public fork's bugs').
            Defaults to `True`.
        schedule_scale: float, multiplies the optimizer update before it reaches the schedule
            points, so a run of N updates can go through icefall's whole 20k-batch warm-up with
            `schedule_scale = 20000 / N`. Defaults to `1.0`.

    Call arguments:
        x: float tensor `[B, T, dim]`, the landmark embedding.
        frame_mask: `[B, T]`, 1 = real frame, 0 = padding.
        training: bool, skips, dropouts and constraints on.
        step: optimizer update (`optimizer.iterations`) the schedules are read at; `None`
            (inference) gives their final values.

    Returns:
        `[B, T, dim]`, padded frames 0.
    """

    def __init__(self, dim: int, blocks: int, heads: int = 4, ffn_dims=(156, 208, 260),
                 kernel_size: int = 51, dropout: float = 0.1, stacks=None,
                 constraints: bool = False, schedules: bool = True,
                 schedule_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.heads, self.ffn_dims = dim, heads, tuple(ffn_dims)
        self.schedule_scale = schedule_scale
        self.kernel_size, self.dropout = kernel_size, dropout
        self.constraints, self.schedules = constraints, schedules
        self.stack_spec = [tuple(int(v) for v in s) for s in stacks] if stacks else [
            (blocks, 1, dim)]
        for n, factor, width in self.stack_spec:
            if n < 1 or factor < 1 or not 0 < width <= dim or width % heads:
                raise ValueError(f"bad stack (blocks={n}, downsample={factor}, width={width}): "
                                 f"needs blocks >= 1, downsample >= 1 and a width <= {dim} "
                                 f"divisible by {heads} heads")
        frozen = {} if schedules else dict(attention_skip_rate=0.0, conv_skip_rate=0.0,
                                           ff_skip_rate=0.0, layer_skip_rate=0.0,
                                           bypass_scale_min=0.0)
        p = dict(dtype=self.dtype_policy)
        self.blocks, self.downsamplers, self.combiners = [], [], []
        for n, factor, width in self.stack_spec:
            ffn = tuple(max(1, round(f * width / dim)) for f in self.ffn_dims)
            for _ in range(n):
                self.blocks.append(ZipformerBlock(
                    dim=width, heads=heads, ffn_dims=ffn, kernel_size=kernel_size,
                    dropout=dropout, constraints=constraints,
                    name=f"block_{len(self.blocks)}", **frozen, **p))
            if factor > 1:
                i = len(self.downsamplers)
                self.downsamplers.append(SimpleDownsample(factor, name=f"downsample_{i}", **p))
                self.combiners.append(Bypass(**({"scale_min": 0.0} if not schedules else {}),
                                             name=f"stack_bypass_{i}", **p))

    def _stacks(self):
        """Per stack, in order: (width, downsample factor, its blocks, (downsample, bypass) or
        None for a full-rate stack)."""
        first = 0
        resampling = iter(zip(self.downsamplers, self.combiners, strict=True))
        for n, factor, width in self.stack_spec:
            yield width, factor, self.blocks[first:first + n], (
                next(resampling) if factor > 1 else None)
            first += n

    def build(self, input_shape):
        for width, _, blocks, resampling in self._stacks():
            for layer in (*blocks, *(resampling or ())):
                layer.build((*input_shape[:-1], width))

    def call(self, x, frame_mask, training=False, step=None):
        t = ops.shape(x)[1]
        if step is not None:
            step = ops.cast(step, "float32") * self.schedule_scale
        for width, factor, blocks, resampling in self._stacks():
            inp = x[..., :width]
            h, mask = inp, frame_mask
            if resampling is not None:
                h, mask = resampling[0](inp, frame_mask)
            for block in blocks:
                h = block(h, mask, step=step, training=training)
            if resampling is not None:
                h = resampling[1](inp, upsample(h, factor, t), step=step, training=training)
                h = zero_pads(h, frame_mask)
            x = h if width == self.dim else ops.concatenate([h, x[..., width:]], axis=-1)
        return x

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads,
                "blocks": sum(n for n, _, _ in self.stack_spec),
                "ffn_dims": list(self.ffn_dims), "kernel_size": self.kernel_size,
                "dropout": self.dropout, "stacks": [list(s) for s in self.stack_spec],
                "constraints": self.constraints, "schedules": self.schedules,
                "schedule_scale": self.schedule_scale}
