"""Decoding modes: how an ensemble's encoder outputs become tokens, in Keras and in TFLite.

One `Decoding` names the mode; `decode` runs it, with `keras.ops` only, so the Keras
evaluation and the exported graph run the same code (docs/decoding.md: the modes, their cost,
what the table in the README measured).

- `attention`, beam 1: the 1st place's greedy attention decoding (`decoder.greedy_decode`,
  member logits averaged every step).
- `ctc`: best-path decoding of the CTC head (`ctc.ctc_greedy_ids`; members' per-frame
  log-probabilities averaged). One encoder pass, no loop.
- `joint`: every step scores each candidate with `(1 - w) log p_attention + w (CTC prefix score
  of the extended prefix - that of the prefix)`, `w = ctc_weight` (Watanabe et al. 2017,
  eq. 23; the 2nd place decoded this way with w = 0.3). EOS gets the CTC probability that the
  prefix is the whole phrase. The CTC term stops the attention decoder from ending too early,
  skipping or repeating characters, which the per-frame alignment rules out.
- `beam > 1` (attention or joint): the `beam` best prefixes by summed step score are kept;
  a finished prefix (EOS) keeps its score and competes with the longer ones to the end; the
  best one wins. No length normalisation: with the CTC term a short prefix already pays for the
  characters it leaves unread.

All loop modes start from `finished` (bool `[B]`): rows marked there run no step and decode to
no characters, which is how the serving graph skips clips without a conditional.
"""

from __future__ import annotations

import argparse
import dataclasses

import keras
from keras import ops

from asl_keras import vocab
from asl_keras.layers import ctc
from asl_keras.layers.decoder import greedy_decode

MODES = ("attention", "ctc", "joint")
DEFAULT_CTC_WEIGHT = 0.3  # the 2nd place's weight


@dataclasses.dataclass(frozen=True)
class Decoding:
    """A decoding mode (module docstring): `mode` in MODES, the CTC weight of `joint`, and the
    beam width (1 = greedy; `ctc` is always best path)."""

    mode: str = "attention"
    ctc_weight: float = DEFAULT_CTC_WEIGHT
    beam: int = 1

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"decoding mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if not 0.0 < self.ctc_weight < 1.0:
            raise ValueError(f"ctc weight {self.ctc_weight}: expected a number between 0 and 1 "
                             "(exclusive); 0 is the attention mode, 1 leaves the decoder out")
        if self.beam < 1 or (self.mode == "ctc" and self.beam != 1):
            raise ValueError(f"beam {self.beam}: expected >= 1, and 1 for the ctc mode (best "
                             "path decoding has no beam here)")

    @property
    def needs_ctc(self) -> bool:
        """True when the members' CTC heads take part (`ctc`, `joint`)."""
        return self.mode != "attention"

    def describe(self) -> str:
        """E.g. `joint (ctc weight 0.3), beam 4`."""
        text = self.mode + (f" (ctc weight {self.ctc_weight:g})" if self.mode == "joint" else "")
        return text + (f", beam {self.beam}" if self.beam > 1 else ", greedy")


GREEDY_ATTENTION = Decoding()  # the 1st place's decoding
# Chosen from the measured table in the README ("Decoding modes"): it beat greedy attention
# decoding beyond the seed spread on the hard synthetic preset, at ~2x the loop's time.
DEFAULT_DECODING = Decoding("joint")


def resolve(models, decoding: Decoding | None = None) -> Decoding:
    """The decoding of an ensemble of Recognizers: `decoding`, or when None DEFAULT_DECODING if
    every member has a CTC head, else GREEDY_ATTENTION (the 1st place's). ValueError when the
    mode needs CTC heads that some members lack."""
    if decoding is None:
        return (DEFAULT_DECODING if all(m.ctc_head is not None for m in models)
                else GREEDY_ATTENTION)
    if decoding.needs_ctc and any(m.ctc_head is None for m in models):
        raise ValueError(f"decoding {decoding.describe()} needs every member's CTC head, and "
                         "the config builds none: train (and export) with "
                         "model.ctc_loss_weight > 0, or use --decoding attention")
    return decoding


def add_arguments(p: argparse.ArgumentParser, where: str) -> None:
    """`--decoding`, `--ctc-weight`, `--beam` of a command line (read back with
    `from_arguments`); `where` says what they decode, for the help text."""
    p.add_argument("--decoding", choices=("auto", *MODES), default="auto",
                   help=f"decoding {where} (docs/decoding.md): attention (the 1st place's), "
                        "ctc (best path of the CTC head) or joint (attention + CTC prefix "
                        "scores; ctc and joint need a CTC head); auto (default): "
                        f"{DEFAULT_DECODING.mode} when every member has a CTC head, "
                        "else attention")
    p.add_argument("--ctc-weight", type=float, default=DEFAULT_CTC_WEIGHT,
                   help="weight of the CTC score in joint decoding")
    p.add_argument("--beam", type=int, default=1,
                   help="beam width of attention or joint decoding (1: greedy)")


def from_arguments(args: argparse.Namespace, p: argparse.ArgumentParser) -> Decoding | None:
    """The Decoding of `add_arguments`' values (None for auto, which `resolve` settles); bad
    values end the command with the parser's usage error."""
    if args.decoding == "auto":
        if args.beam != 1 or args.ctc_weight != DEFAULT_CTC_WEIGHT:
            p.error("--beam and --ctc-weight need an explicit --decoding")
        return None
    try:
        return Decoding(args.decoding, args.ctc_weight, args.beam)
    except ValueError as e:
        p.error(str(e))


def decode(decoding: Decoding, members, ctc_log_probs=None, finished=None,
           max_steps: int = vocab.LABEL_LEN):
    """Token ids `[B, max_steps + 1]` (SOS first, EOS after the characters) of one mode.

    `members`: `(decoder, encoder_output [B, T, d], encoder_mask [B, T])` per ensemble member;
    `ctc_log_probs`: the members' mean `ctc.ctc_log_probs` `[B, T, 60]` (modes with
    `needs_ctc`); `finished` (bool `[B]`): rows that get no characters.
    """
    if decoding.needs_ctc and ctc_log_probs is None:
        raise ValueError(f"decoding {decoding.describe()} needs the CTC log-probabilities")
    if decoding.mode == "ctc":
        ids = ctc.ctc_greedy_ids(ctc_log_probs, max_steps)
    elif decoding.mode == "attention" and decoding.beam == 1:
        ids = greedy_decode(list(members), max_steps=max_steps, finished=finished)[0]
    else:
        ids = beam_search(members, decoding.beam,
                          ctc_log_probs if decoding.mode == "joint" else None,
                          decoding.ctc_weight, finished, max_steps)
    if finished is None:
        return ids
    # greedy decoding keeps generating for finished rows while others run (as the reference)
    nothing = ops.concatenate([ids[:, :1], ops.full(ops.shape(ids[:, 1:]), vocab.EOS, "int32")],
                              axis=1)
    return ops.where(ops.cast(finished, "bool")[:, None], nothing, ids)


def mean_ctc_log_probs(logits, frame_mask):
    """Ensemble CTC log-probabilities `[B, T, 60]` from each member's CTC logits: the mean of
    their log-probabilities (a geometric mean of the distributions), renormalised."""
    members = [ctc.ctc_log_probs(x, frame_mask) for x in logits]
    if len(members) == 1:
        return members[0]
    return ctc.ctc_log_probs(ops.mean(ops.stack(members), axis=0), frame_mask)


def _candidate_ctc_scores(state, log_probs):
    """CTC score of every decoder id `[B, 63]` for the state's prefix: characters and EOS get
    their prefix score minus the prefix's own, other ids are IMPOSSIBLE. Also returns what
    `ctc_prefix_advance` needs."""
    extended, end, phi = ctc.ctc_prefix_scores(state, log_probs)
    score = state["score"][:, None]
    rows = ops.shape(extended)[0]
    impossible = ops.full((rows, 1), ctc.IMPOSSIBLE)
    # decoder ids after the characters: PAD, SOS, EOS, DECODER_MASK
    scores = ops.concatenate([extended - score, impossible, impossible, (end[:, None] - score),
                              impossible], axis=1)
    return scores, extended, phi


def beam_search(members, beam: int, ctc_log_probs=None, ctc_weight: float = DEFAULT_CTC_WEIGHT,
                finished=None, max_steps: int = vocab.LABEL_LEN):
    """Beam search over the members' mean attention log-probabilities, joint with the CTC
    prefix score when `ctc_log_probs` is given (module docstring). Beam 1 is greedy.

    Candidates are the characters and EOS. Returns the best prefix's ids `[B, max_steps + 1]`.
    """
    batch = ops.shape(members[0][1])[0]
    rows = batch * beam

    def per_row(x):  # [B, ...] -> [B * beam, ...], each sample's row repeated `beam` times
        return x if beam == 1 else ops.repeat(x, beam, axis=0)

    caches = tuple(keras.tree.map_structure(per_row, dec.init_cache(enc, mask, max_steps))
                   for dec, enc, mask in members)
    done = ops.zeros((rows,), "bool") if finished is None else per_row(ops.cast(finished,
                                                                                "bool"))
    ids = ops.concatenate([ops.full((rows, 1), vocab.SOS, "int32"),
                           ops.full((rows, max_steps), vocab.PAD, "int32")], axis=1)
    # only the first copy of each sample starts alive, so the first step's beam holds `beam`
    # different characters
    first = ops.where(ops.arange(beam) == 0, 0.0, ctc.IMPOSSIBLE)
    scores = ops.tile(first[None, :], (batch, 1))
    log_probs = None if ctc_log_probs is None else per_row(ctc_log_probs)
    prefix = () if log_probs is None else ctc.ctc_prefix_init(log_probs)
    vocab_ids = ops.arange(vocab.VOCAB_SIZE, dtype="int32")
    allowed = ops.logical_or(vocab_ids < vocab.NUM_CHARS, vocab_ids == vocab.EOS)
    pad_only = ops.where(vocab_ids == vocab.PAD, 0.0, ctc.IMPOSSIBLE)

    def cond(i, ids, scores, done, caches, prefix):
        return ops.logical_and(i < max_steps, ops.logical_not(ops.all(done)))

    def body(i, ids, scores, done, caches, prefix):
        token = ops.take(ids, i, axis=1)
        outs = [dec.step(token, i, cache) for (dec, _, _), cache in zip(members, caches,
                                                                         strict=True)]
        logits = outs[0][0] if len(outs) == 1 else ops.mean(ops.stack([o for o, _ in outs]), 0)
        step = ops.where(allowed, ops.log_softmax(logits, axis=-1), ctc.IMPOSSIBLE)
        if log_probs is not None:
            ctc_scores, extended, phi = _candidate_ctc_scores(prefix, log_probs)
            step = (1.0 - ctc_weight) * step + ctc_weight * ctc_scores
        # a finished prefix only continues with PAD, at no cost
        step = ops.where(done[:, None], pad_only, step)
        total = ops.reshape(scores[:, :, None] + ops.reshape(step, (batch, beam, -1)),
                            (batch, -1))
        scores, best = ops.top_k(total, beam)  # sorted: column 0 is the best prefix
        best = ops.cast(best, "int32")
        chosen = ops.reshape(best % vocab.VOCAB_SIZE, (rows,))
        caches = tuple(cache for _, cache in outs)
        if beam > 1:  # continue from each chosen prefix's row
            parent = ops.reshape(best // vocab.VOCAB_SIZE
                                 + ops.arange(batch, dtype="int32")[:, None] * beam, (rows,))
            ids, done = ops.take(ids, parent, axis=0), ops.take(done, parent, axis=0)
            caches = tuple({**c, **{k: keras.tree.map_structure(
                lambda x: ops.take(x, parent, axis=0), c[k]) for k in ("self_k", "self_v",
                                                                        "count")}}
                for c in caches)
            if log_probs is not None:
                phi, extended = ops.take(phi, parent, axis=0), ops.take(extended, parent, 0)
                prefix = keras.tree.map_structure(lambda x: ops.take(x, parent, axis=0), prefix)
        if log_probs is not None:
            prefix = ctc.ctc_prefix_advance(prefix, log_probs, extended, phi, chosen)
        ids = ops.slice_update(ids, [0, i + 1], chosen[:, None])
        done = ops.logical_or(done, ops.logical_or(chosen == vocab.EOS, chosen == vocab.PAD))
        return i + 1, ids, scores, done, caches, prefix

    state = (ops.convert_to_tensor(0, "int32"), ids, scores, done, caches, prefix)
    _, ids, _, _, _, _ = ops.while_loop(cond, body, state, maximum_iterations=max_steps)
    return ops.reshape(ids, (batch, beam, -1))[:, 0]
