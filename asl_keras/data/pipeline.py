"""TFRecords -> fixed-shape training and evaluation batches, per replica.

Batches are dicts: `landmarks [B, max_len, 130, 3]`, `mask [B, max_len]`, `labels [B, 33]`,
`score [B]`, `n_frames [B]` (raw length, for the short-clip rule) and `sequence_id [B]`.

Sampling follows the reference's round 2 (docs/reference.md, 'Sampling, folds and rounds'):
every epoch holds one item per competition-train row of the training folds plus one item per
unique supplemental phrase (a random sequence with that phrase, drawn again every epoch).
Validation is the competition-train rows of the held-out fold; `fold = -1` trains on everything
(and validates on fold 0, as the reference does, which is then not a held-out score).
Supplemental rows of held-out signers are left out of training so the validation signers stay
unseen.

Round-2 scores are joined here by `sequence_id` from a CSV (`sequence_id,score`), so a new score
table needs no new records. Randomness is stateless, seeded from (config seed, epoch,
sequence_id); the same seed gives the same batches.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from asl_keras import config, vocab
from asl_keras.data import augment, preprocess, records
from asl_keras.data.convert import INDEX
from asl_keras.runtime import tf

DEFAULT_SCORE = 1.0  # the reference's value when no score table is given


def read_index(records_dir: str) -> pd.DataFrame:
    """The conversion's `index.csv` (one row per record, no frames); any tf.io.gfile path."""
    with tf.io.gfile.GFile(f"{records_dir.rstrip('/')}/{INDEX}", "r") as f:
        return pd.read_csv(f, dtype={"phrase": str}, keep_default_na=False)


def read_scores(path: str | None) -> dict[int, float]:
    """Round-1 score table -> {sequence_id: score clipped to [0, 1]}."""
    if not path:
        return {}
    with tf.io.gfile.GFile(path, "r") as f:
        table = pd.read_csv(f)
    missing = {"sequence_id", "score"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    return dict(zip(table["sequence_id"].astype(np.int64),
                    table["score"].clip(0, 1).astype(np.float32), strict=True))


class Selection:
    """Which records one epoch uses, as graph-side lookup tables keyed by `sequence_id`."""

    def __init__(self, index: pd.DataFrame, data: config.Data, training: bool):
        fold = data.fold
        comp = index[index["is_supplemental"] == 0]
        if training:
            comp = comp[(comp["fold"] != fold) | (fold == -1)]
            comp = comp[comp["n_frames"] >= data.min_seq_len]
            supp = index[(index["is_supplemental"] == 1) & ((index["fold"] != fold) | (fold == -1))]
            supp = supp if data.supplemental else supp.iloc[:0]
        else:
            comp = comp[comp["fold"] == max(fold, 0)]
            supp = index.iloc[:0]
        supp = supp.sort_values("sequence_id")
        group = supp.groupby("phrase", sort=True).ngroup().to_numpy()
        rank = supp.groupby("phrase").cumcount().to_numpy()
        size = supp.groupby("phrase")["sequence_id"].transform("size").to_numpy()
        ids = np.concatenate([comp["sequence_id"].to_numpy(), supp["sequence_id"].to_numpy()])
        self.items_per_epoch = len(comp) + (len(np.unique(group)) if len(supp) else 0)
        self._group = _table(ids, np.concatenate([np.full(len(comp), -1), group]), -2)
        self._rank = _table(ids, np.concatenate([np.zeros(len(comp), int), rank]), 0)
        self._size = _table(ids, np.concatenate([np.ones(len(comp), int), size]), 1)

    def keep(self, sequence_id, seed, epoch) -> tf.Tensor:
        """True for a selected record: every chosen competition row, one sequence per phrase."""
        g = self._group.lookup(sequence_id)
        draw = tf.random.stateless_uniform(
            [], tf.stack([tf.cast(seed, tf.int64) * 7919 + epoch, g]), 0,
            self._size.lookup(sequence_id), dtype=tf.int64)
        return (g == -1) | ((g >= 0) & (draw == self._rank.lookup(sequence_id)))


def _table(keys, values, default) -> tf.lookup.StaticHashTable:
    init = tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.int64),
                                               tf.constant(values, tf.int64))
    return tf.lookup.StaticHashTable(init, default_value=tf.constant(default, tf.int64))


def score_table(scores: dict[int, float]) -> tf.lookup.StaticHashTable:
    """`sequence_id -> round-1 score` lookup (`read_scores`); unknown ids get DEFAULT_SCORE."""
    keys = np.fromiter(scores, np.int64, len(scores)) if scores else np.zeros(1, np.int64) - 1
    vals = np.asarray(list(scores.values()), np.float32) if scores else np.ones(1, np.float32)
    init = tf.lookup.KeyValueTensorInitializer(keys, vals)
    return tf.lookup.StaticHashTable(init, default_value=DEFAULT_SCORE)


def to_sample(ex, scores, buffer_len: int) -> dict:
    """Parsed record -> augmentation sample (normalised, in a fixed `buffer_len` buffer)."""
    x = preprocess.frames_to_landmarks(ex["frames"])
    x, _ = preprocess.resample_or_pad(x, buffer_len)
    n_tok = tf.minimum(tf.shape(ex["token_ids"])[0], augment.TOKEN_LEN)
    tokens = tf.pad(ex["token_ids"][:augment.TOKEN_LEN], [[0, augment.TOKEN_LEN - n_tok]],
                    constant_values=vocab.PAD)
    return {"x": x, "n": tf.minimum(tf.cast(ex["n_frames"], tf.int32), buffer_len),
            "tokens": tf.ensure_shape(tokens, [augment.TOKEN_LEN]), "n_tokens": n_tok,
            "score": scores.lookup(ex["sequence_id"])}


def to_batch_item(sample, ex, max_len: int) -> dict:
    """Augmented sample -> the model's fixed-shape inputs."""
    x, mask = preprocess.resample_or_pad(sample["x"], max_len, sample["n"])
    return {"landmarks": x, "mask": mask, "labels": augment.labels(sample["tokens"],
                                                                    sample["n_tokens"]),
            "score": sample["score"], "n_frames": tf.cast(ex["n_frames"], tf.int32),
            "sequence_id": ex["sequence_id"]}


def element_seed(seed: int, epoch, sequence_id) -> tf.Tensor:
    """Stateless seed of one element in one epoch."""
    base = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, sequence_id)


def _records(records_dir: str, ctx, shuffle_seed=None) -> tf.data.Dataset:
    files = tf.data.Dataset.from_tensor_slices(records.list_shards(records_dir))
    if ctx is not None and ctx.num_input_pipelines > 1:
        files = files.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
    if shuffle_seed is not None:
        files = files.shuffle(1 << 16, seed=shuffle_seed)
    return files.interleave(tf.data.TFRecordDataset, cycle_length=4, deterministic=True,
                            num_parallel_calls=tf.data.AUTOTUNE).map(
        records.parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def train_dataset(data: config.Data, seed: int, epochs: int, start_epoch: int = 0,
                  ctx: tf.distribute.InputContext | None = None,
                  steps_per_epoch: int | None = None) -> tf.data.Dataset:
    """Training stream of epochs `start_epoch .. epochs-1`, batched per replica.

    Batches never straddle two epochs, so a run resumed at an epoch sees exactly the batches
    an uninterrupted run would. With `steps_per_epoch`, every epoch has exactly that many
    batches (an input pipeline that runs short of items repeats its epoch's stream).
    """
    index = read_index(data.records)
    selection = Selection(index, data, training=True)
    scores = score_table(read_scores(data.scores))
    batch = ctx.get_per_replica_batch_size(data.batch_size * ctx.num_replicas_in_sync) \
        if ctx is not None else data.batch_size
    aug = data.augment

    def prepare(ex):
        return {"sample": to_sample(ex, scores, data.buffer_len),
                "meta": {k: ex[k] for k in ("sequence_id", "participant_id", "n_frames")}}

    def one_epoch(epoch):
        ds = _records(data.records, ctx, shuffle_seed=seed * 1000 + epoch)
        ds = ds.filter(lambda ex: selection.keep(ex["sequence_id"], seed, epoch))
        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.shuffle(data.shuffle_buffer, seed=seed * 1000 + epoch + 1)
        # Pair consecutive records of the same signer: the reference's CutMix partners share a
        # participant, and neighbours in the shuffled stream keep the pipeline streaming.
        ds = ds.group_by_window(key_func=lambda e: e["meta"]["participant_id"],
                                reduce_func=lambda _, w: w.batch(2), window_size=2)

        def expand(pair):
            size = tf.shape(pair["meta"]["sequence_id"])[0]
            items = []
            for i in (0, 1):
                me = tf.nest.map_structure(lambda v, i=i: v[tf.minimum(i, size - 1)], pair)
                other = tf.nest.map_structure(lambda v, i=i: v[size - 1 - i], pair)
                k = element_seed(seed, epoch, me["meta"]["sequence_id"])
                out = augment.augment(me["sample"], other["sample"], k, aug,
                                      has_partner=size == 2)
                items.append(to_batch_item(out, me["meta"], data.max_len))
            both = tf.nest.map_structure(lambda a, b: tf.stack([a, b]), *items)
            return tf.data.Dataset.from_tensor_slices(both).take(tf.cast(size, tf.int64))

        ds = ds.interleave(expand, cycle_length=16, num_parallel_calls=tf.data.AUTOTUNE,
                           deterministic=True)
        if steps_per_epoch is not None:
            ds = ds.repeat()
        ds = ds.batch(batch, drop_remainder=True)
        return ds.take(steps_per_epoch) if steps_per_epoch is not None else ds

    ds = tf.data.Dataset.range(start_epoch, epochs).flat_map(one_epoch)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(data: config.Data, ctx=None, batch_size: int | None = None) -> tf.data.Dataset:
    """Held-out fold (competition rows only), preprocessed as at inference, in record order."""
    return _eval_items(data, ctx).batch(batch_size or data.batch_size).prefetch(tf.data.AUTOTUNE)


def static_eval_dataset(data: config.Data, batch_size: int, multiple: int = 1
                        ) -> tf.data.Dataset:
    """`eval_dataset` with a boolean `valid [B]` in batches of exactly `batch_size` rows, as
    many batches as a multiple of `multiple`: the rows after the fold's last are zeros with
    `valid` False. Every batch has the same static shape (what a TPU compiles for), and with
    `multiple` = the replicas of a host, each replica gets a batch at every step."""
    selection = Selection(read_index(data.records), data, training=False)
    count = selection.items_per_epoch
    items = _eval_items(data, selection=selection).map(lambda row: {**row, "valid": True})
    batches = -(-max(-(-count // batch_size), 1) // multiple) * multiple
    filler = items.take(1).map(lambda row: {**tf.nest.map_structure(tf.zeros_like, row),
                                            "valid": False})
    items = items.concatenate(filler.repeat(batches * batch_size - count))
    return items.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _eval_items(data: config.Data, ctx=None, selection: Selection | None = None
                ) -> tf.data.Dataset:
    """The held-out fold's rows (see `eval_dataset`), unbatched; `selection`: the fold's
    `Selection`, when the caller has read the index already."""
    selection = selection or Selection(read_index(data.records), data, training=False)
    scores = score_table(read_scores(data.scores))

    def item(ex):
        x, mask = preprocess.preprocess(ex["frames"], data.max_len)
        n_tok = tf.shape(ex["token_ids"])[0]
        tokens = tf.pad(ex["token_ids"], [[0, augment.TOKEN_LEN - n_tok]],
                        constant_values=vocab.PAD)
        return {"landmarks": x, "mask": mask, "labels": augment.labels(tokens, n_tok),
                "score": scores.lookup(ex["sequence_id"]),
                "n_frames": tf.cast(ex["n_frames"], tf.int32), "sequence_id": ex["sequence_id"]}

    ds = _records(data.records, ctx).filter(lambda ex: selection.keep(ex["sequence_id"], 0, 0))
    return ds.map(item, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
