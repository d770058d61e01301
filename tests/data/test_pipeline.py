"""The tf.data pipeline on converted synthetic records: sampling, shapes, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from asl_keras import config, vocab
from asl_keras.data import convert, kaggle, pipeline, preprocess, records
from tests.paths import config_path


@pytest.fixture(scope="module")
def data_cfg(synthetic_records):
    cfg = config.load(config_path("cfg_2.yaml")).data
    return dataclasses.replace(cfg, records=str(synthetic_records), fold=0, max_len=64,
                               buffer_len=128, batch_size=4, scores=None, shuffle_buffer=64)


def take(ds, n):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds.take(n)]


def test_round_trip_of_the_synthetic_folder_is_bit_identical(synthetic_kaggle, synthetic_records):
    meta = kaggle.read_metadata(str(synthetic_kaggle))
    got = {r["sequence_id"]: r for s in records.list_shards(str(synthetic_records))
           for r in records.read_shard(s)}
    manifest = convert.verify(str(synthetic_kaggle), str(synthetic_records))
    assert manifest["records"] + manifest["skipped"] == len(meta) == 120
    for path in sorted(meta["path"].unique()):
        df = pd.read_parquet(synthetic_kaggle / path)
        for sid, g in df.groupby(level="sequence_id"):
            if sid in got:
                want = g.sort_values("frame")[list(records.SELECTED_COLUMNS)].to_numpy(np.float32)
                assert got[sid]["frames"].tobytes() == want.tobytes()
    folds = {}
    for r in got.values():
        if not r["is_supplemental"]:
            folds.setdefault(r["participant_id"], set()).add(r["fold"])
    assert all(len(f) == 1 for f in folds.values()) and len(set().union(*folds.values())) == 4


def test_epoch_holds_train_rows_plus_one_item_per_supplemental_phrase(data_cfg):
    index = pipeline.read_index(data_cfg.records)
    sel = pipeline.Selection(index, data_cfg, training=True)
    comp = index[(index.is_supplemental == 0) & (index.fold != 0)]
    supp = index[(index.is_supplemental == 1) & (index.fold != 0)]
    assert sel.items_per_epoch == len(comp) + supp["phrase"].nunique()
    for epoch in (0, 1):
        kept = [int(s) for s in index["sequence_id"] if sel.keep(tf.constant(s, tf.int64), 3,
                                                                 epoch)]
        chosen = index[index.sequence_id.isin(kept)]
        assert set(comp.sequence_id) <= set(kept)
        picked = chosen[chosen.is_supplemental == 1]
        assert sorted(picked.phrase) == sorted(supp.phrase.unique())  # one per phrase
        assert not ((chosen.fold == 0) & (chosen.is_supplemental == 0)).any()


def test_validation_is_the_held_out_fold_of_competition_rows(data_cfg):
    batches = take(pipeline.eval_dataset(data_cfg), 100)
    ids = np.concatenate([b["sequence_id"] for b in batches])
    index = pipeline.read_index(data_cfg.records).set_index("sequence_id")
    assert len(ids) == ((index.fold == 0) & (index.is_supplemental == 0)).sum()
    assert (index.loc[ids, "fold"] == 0).all() and (index.loc[ids, "is_supplemental"] == 0).all()
    first = batches[0]
    sid = int(first["sequence_id"][0])
    rec = next(r for s in records.list_shards(data_cfg.records) for r in records.read_shard(s)
               if r["sequence_id"] == sid)
    x, mask = preprocess.preprocess(rec["frames"], data_cfg.max_len)
    np.testing.assert_allclose(first["landmarks"][0], x.numpy(), atol=1e-6)  # graph vs eager
    assert vocab.decode(first["labels"][0]) == rec["phrase"]


def test_training_batches_have_static_shapes(data_cfg):
    ds = pipeline.train_dataset(data_cfg, seed=1, epochs=1)
    spec = ds.element_spec
    assert spec["landmarks"].shape == (4, 64, 130, 3) and spec["labels"].shape == (4, 33)
    assert spec["mask"].shape == (4, 64) and spec["score"].shape == (4,)
    n = sum(1 for _ in ds)
    sel = pipeline.Selection(pipeline.read_index(data_cfg.records), data_cfg, training=True)
    assert n == sel.items_per_epoch // 4


def test_same_seed_same_batches_different_seed_different(data_cfg):
    a = take(pipeline.train_dataset(data_cfg, seed=5, epochs=1), 3)
    b = take(pipeline.train_dataset(data_cfg, seed=5, epochs=1), 3)
    c = take(pipeline.train_dataset(data_cfg, seed=6, epochs=1), 3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["landmarks"], y["landmarks"])
        np.testing.assert_array_equal(x["labels"], y["labels"])
    assert any(not np.array_equal(x["landmarks"], y["landmarks"]) for x, y in
               zip(a, c, strict=True))


def test_scores_are_joined_by_sequence_id(data_cfg, tmp_path):
    index = pipeline.read_index(data_cfg.records)
    table = tmp_path / "scores.csv"
    pd.DataFrame({"sequence_id": index.sequence_id, "score": 0.25}).to_csv(table, index=False)
    cfg = dataclasses.replace(data_cfg, scores=str(table))
    batch = take(pipeline.eval_dataset(cfg), 1)[0]
    np.testing.assert_allclose(batch["score"], 0.25)
    assert (take(pipeline.eval_dataset(data_cfg), 1)[0]["score"] == pipeline.DEFAULT_SCORE).all()


def test_cutmix_partners_are_other_sequences_of_the_same_signer(data_cfg):
    """With CutMix always on (nothing else), each item's phrase is tail(A) + head(B) of two
    phrases of its own signer, A or B being its own phrase."""
    aug = config.Augment(cutmix=1.0)
    cfg = dataclasses.replace(data_cfg, augment=aug, supplemental=False)
    index = pipeline.read_index(cfg.records).set_index("sequence_id")
    mixed = 0
    for batch in take(pipeline.train_dataset(cfg, seed=3, epochs=1), 6):
        for sid, labels in zip(batch["sequence_id"], batch["labels"], strict=True):
            text = vocab.decode(labels)
            own = index.loc[sid]
            same = index[(index.participant_id == own.participant_id)
                         & (index.is_supplemental == 0)].phrase.tolist()
            joins = {a[i:] + b[:j] for a in same for b in same
                     if a != b and own.phrase in (a, b)
                     for i in range(1, len(a)) for j in range(1, len(b))}
            if text != own.phrase:
                mixed += 1
                assert text in joins, (text, own.phrase)
    assert mixed > 10
