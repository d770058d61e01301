import glob

import pytest

from asl_keras import config


@pytest.mark.parametrize("path", sorted(glob.glob("configs/*.yaml")))
def test_shipped_configs_load(path):
    assert config.load(path).data.max_len >= 8


def test_unknown_key_is_named_with_its_path(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  augment:\n    fliip: 0.5\n")
    with pytest.raises(config.ConfigError, match=r"unknown key data\.augment\.fliip"):
        config.load(str(p))


@pytest.mark.parametrize("override,msg", [
    ("data.augment.resample.p=1.5", r"data\.augment\.resample\.p: probability"),
    ("data.augment.affine.scale=[1.3, 0.7]", r"data\.augment\.affine\.scale: expected \[low"),
    ("data.max_len=abc", r"data\.max_len: expected int"),
    ("data.buffer_len=16", r"data\.buffer_len: must be >= max_len"),
    ("data.fold=-3", r"data\.fold"),
    ("train.time_limit_hours=-1", r"train\.time_limit_hours: must be >= 0"),
    ("train.time_limit_hours=soon", r"train\.time_limit_hours: expected a number"),
    ("train.steps_per_execution=-1", r"train\.steps_per_execution: must be >= 0"),
    ("train.steps_per_execution=1.5", r"train\.steps_per_execution: expected int"),
])
def test_bad_values_are_rejected(override, msg):
    with pytest.raises(config.ConfigError, match=msg):
        config.load("configs/cfg_2.yaml", [override])


def test_overrides_apply():
    cfg = config.load("configs/cfg_2.yaml", ["data.fold=2", "seed=7", "data.scores=null"])
    assert (cfg.data.fold, cfg.seed, cfg.data.scores) == (2, 7, None)
