"""The whole recogniser: landmarks -> encoder -> decoders and confidence head; its loss.

Reference: the 1st place's `models/mdl_2_pt.py` (cfg_2) and `mdl_1_pt.py` (cfg_1); their
quirks: docs/reference.md, 'Input side' to 'Losses'.
Inputs are the pipeline's batch dict: `landmarks [B, T, 130, 3]`, `mask [B, T]`,
`labels [B, 33]` and, for the confidence head, `score [B]`.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from asl_keras import config, vocab
from asl_keras.layers import ctc
from asl_keras.layers import decoder as dec
from asl_keras.models.encoder import LandmarkEmbedding, SqueezeformerEncoder, ZipformerEncoder


def build_encoder(cfg: config.Model, dtype=None) -> keras.layers.Layer:
    """The encoder stack named by `cfg.encoder`."""
    if cfg.encoder == "squeezeformer":
        return SqueezeformerEncoder(cfg.dim, cfg.blocks, cfg.heads, cfg.attention,
                                    cfg.ff_expansion, cfg.conv_expansion, cfg.kernel_size,
                                    cfg.dropout, cfg.zero_glu_pads, name="encoder", dtype=dtype)
    return ZipformerEncoder(cfg.dim, cfg.blocks, cfg.heads, cfg.ffn_dims, cfg.kernel_size,
                            cfg.dropout, stacks=cfg.stacks or None,
                            constraints=cfg.constraints, schedules=cfg.schedules,
                            schedule_scale=cfg.schedule_scale,
                            name="encoder", dtype=dtype)


@keras.saving.register_keras_serializable(package="asl_keras")
class Recognizer(keras.Model):
    """The 1st-place recogniser (`mdl_2_pt.py`, cfg_2; `mdl_1_pt.py`, cfg_1): feature
    extractors -> encoder -> forward decoder (+ backward decoder, confidence head).

    In training, decoder inputs are masked with `decoder_mask` (labels replaced by DECODER_MASK
    before the shift); targets stay unmasked. `per_sample_loss` gives the reference's loss per
    sample; `encode` and `generate` (greedy decoding with the KV cache) serve inference.

    Args:
        model: the `model` section of a run config as a dict (`config.Model` fields).
            Defaults to `None` (every field at its default).
        decoder_mask: probability that a decoder input token is masked in training.
            Defaults to `0.0`.
        seed: seed of the masking draws; `build_recognizer` passes the run seed, so the
            members of a seed ensemble mask differently and a run repeats its own draws.
            Defaults to `0`.

    Call arguments:
        inputs: the pipeline's batch dict: `landmarks [B, T, 130, 3]`, `mask [B, T]` (1 = real
            frame) and `labels [B, 33]` (`score [B]` is read only by `per_sample_loss`).
        training: bool, dropouts, decoder-input masking, BatchNorm batch statistics and
            the Zipformer's skips on.
        step: optimizer update passed to the encoder's schedules (`None`: final values).

    Returns:
        A dict: `logits [B, 33, 63]` (float32, teacher forced) and `encoded [B, T, dim]`;
        with the cfg_2 heads `logits_bwd [B, 33, 63]` (backward decoder on the time-flipped
        encoder output, training loss only) with its `targets_bwd` and `weights_bwd`
        (`[B, 33]`, from `decoder.backward_targets`), and `confidence [B]` (float32 logit on
        encoder frame 0); with `ctc_loss_weight > 0`, float32 `ctc_logits [B, T, 60]`.
    """

    def __init__(self, model: dict | None = None, decoder_mask: float = 0.0, seed: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.cfg = config.from_dict(config.Model, model or {}, "model")
        self.decoder_mask, self.seed = decoder_mask, seed
        c, p = self.cfg, dict(dtype=self.dtype_policy)
        self.embedding = LandmarkEmbedding(c.dim, c.part_extractors, c.hand_features,
                                           name="embedding", **p)
        self.encoder = build_encoder(c, self.dtype_policy)

        def decoder(name):
            return dec.ReferenceDecoder(c.dim, c.decoder_layers, c.decoder_heads, c.decoder_ffn,
                                        name=name, **p)

        self.decoder = decoder("decoder")
        self.backward_decoder = decoder("decoder2") if c.backward_decoder else None
        self.confidence_head = (keras.layers.Dense(1, name="aux_fc", **p)
                                if c.confidence_head else None)
        # characters + a blank; exports contain it only for the decoding modes that use it
        self.ctc_head = (keras.layers.Dense(vocab.CTC_BLANK + 1, name="ctc_fc", **p)
                         if c.ctc_loss_weight > 0 else None)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape=None):
        t = None
        self.embedding.build((None, t, 130, 3))
        self.encoder.build((None, t, self.cfg.dim))
        for d in (self.decoder, self.backward_decoder):
            if d is not None:
                d.build()
        for head in (self.confidence_head, self.ctc_head):
            if head is not None:
                head.build((None, self.cfg.dim))

    @property
    def padding_invariant(self) -> bool:
        """True when padded frames cannot change the outputs on real frames: every Zipformer,
        and a Squeezeformer with `zero_glu_pads` (the reference conv module leaks padding)."""
        return self.cfg.encoder == "zipformer" or self.cfg.zero_glu_pads

    def encode(self, landmarks, mask, training=False, step=None):
        """`[B, T, 130, 3]`, `[B, T]` -> encoder output `[B, T, dim]`."""
        x = self.embedding(landmarks, mask, training=training)
        return self.encoder(x, mask, training=training, step=step)

    def confidence(self, encoded):
        """Confidence logit `[B]` from encoder frame 0 (float32)."""
        return ops.cast(self.confidence_head(encoded[:, 0])[:, 0], "float32")

    def ctc_logits(self, encoded):
        """CTC head logits `[B, T, 60]` (float32; blank = `vocab.CTC_BLANK`)."""
        return ops.cast(self.ctc_head(encoded), "float32")

    def decoder_inputs(self, labels, training=False):
        """Decoder inputs `[B, L]` (int32) for labels `[B, L]`: the start token, then the labels
        without the last; in training, tokens masked at rate `decoder_mask` first (fresh draws
        on every call)."""
        if training and self.decoder_mask > 0:
            hit = keras.random.uniform(ops.shape(labels), seed=self.seed_generator)
            labels = ops.where(hit < self.decoder_mask, vocab.DECODER_MASK, labels)
        return dec.shift_right(labels)

    def call(self, inputs, training=False, step=None):
        mask = inputs["mask"]
        encoded = self.encode(inputs["landmarks"], mask, training=training, step=step)
        labels = ops.cast(inputs["labels"], "int32")
        out = {"logits": self.decoder(self.decoder_inputs(labels, training), encoded, mask,
                                      training=training),
               "encoded": encoded}
        if self.backward_decoder is not None:
            targets, weights = dec.backward_targets(labels)
            flipped, flipped_mask = dec.flip_time(encoded, mask)
            out["logits_bwd"] = self.backward_decoder(self.decoder_inputs(targets, training),
                                                      flipped, flipped_mask, training=training)
            out["targets_bwd"], out["weights_bwd"] = targets, weights
        if self.confidence_head is not None:
            out["confidence"] = self.confidence(encoded)
        if self.ctc_head is not None:
            out["ctc_logits"] = self.ctc_logits(encoded)
        return out

    def per_sample_loss(self, inputs, outputs, xla: bool = False):
        """`0.98 * (0.6 CE_fwd + 0.4 CE_bwd) + 0.02 BCE_conf` per sample `[B]` (cfg_1: CE).

        With `ctc_loss_weight = w > 0` the decoder term becomes `(1 - w) CE + w CTC`. `xla`:
        the loss is compiled with XLA (`ctc.ctc_loss_per_char` then picks a CTC XLA compiles).
        """
        c = self.cfg
        loss = dec.sequence_cross_entropy(inputs["labels"], outputs["logits"])
        if "logits_bwd" in outputs:
            bwd = dec.sequence_cross_entropy(outputs["targets_bwd"], outputs["logits_bwd"],
                                             outputs["weights_bwd"])
            loss = (1 - c.backward_loss_weight) * loss + c.backward_loss_weight * bwd
        if "ctc_logits" in outputs:
            aligned = ctc.ctc_loss_per_char(inputs["labels"], outputs["ctc_logits"],
                                            inputs["mask"], xla)
            loss = (1 - c.ctc_loss_weight) * loss + c.ctc_loss_weight * aligned
        if "confidence" in outputs:
            target = ops.cast(inputs["score"], "float32")
            logit = outputs["confidence"]
            bce = ops.binary_crossentropy(target, logit, from_logits=True)
            loss = (1 - c.aux_loss_weight) * loss + c.aux_loss_weight * bce
        return loss

    def generate(self, landmarks, mask, max_steps: int = vocab.LABEL_LEN):
        """Greedy decoding with the KV cache: `(ids [B, max_steps+1], step_logits, steps)`."""
        encoded = self.encode(landmarks, mask)
        return dec.greedy_decode(self.decoder, encoded, mask, max_steps)

    def get_config(self):
        return {**super().get_config(), "model": dataclasses.asdict(self.cfg),
                "decoder_mask": self.decoder_mask, "seed": self.seed}


def build_recognizer(cfg: config.Config) -> Recognizer:
    """A built Recognizer for a run config."""
    model = Recognizer(dataclasses.asdict(cfg.model), cfg.data.augment.decoder_mask, cfg.seed,
                       name="recognizer")
    model.build()
    return model
