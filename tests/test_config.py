import dataclasses
import json
import os
import uuid

import pytest
import tensorflow as tf
import yaml

from asl_keras import config
from tests.paths import CONFIGS, FIXTURES, config_path

SHIPPED = sorted(f for f in os.listdir(CONFIGS) if f.endswith(".yaml"))
# Every shipped config resolved by the code and YAMLs from before `base:` existed (each file
# then spelled out all its keys): the inheriting YAMLs must resolve to exactly these values.
RESOLVED = os.path.join(FIXTURES, "resolved_configs.json")
CFG_2 = config_path("cfg_2.yaml")


def write(folder, name: str, text: str) -> str:
    path = os.path.join(str(folder), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    assert config.load(os.path.join(CONFIGS, name)).data.max_len >= 8


def test_every_shipped_config_has_stored_values():
    with open(RESOLVED, encoding="utf-8") as f:
        assert sorted(json.load(f)) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_resolve_to_stored_values(name):
    with open(RESOLVED, encoding="utf-8") as f:
        stored = json.load(f)[name]
    # Through JSON so tuples compare as the lists the file holds.
    resolved = json.loads(json.dumps(dataclasses.asdict(config.load(os.path.join(CONFIGS, name)))))
    assert resolved == stored


def flat(values: dict, prefix: str = "") -> dict:
    """Nested mappings -> {"data.augment.flip": value, ...}."""
    return {k: v for key, value in values.items()
            for k, v in (flat(value, f"{prefix}{key}.").items() if isinstance(value, dict)
                         else [(prefix + key, value)])}


def own_values(name: str) -> dict:
    """A shipped YAML's own keys, flattened (its base not applied)."""
    with open(os.path.join(CONFIGS, name), encoding="utf-8") as f:
        return flat(yaml.safe_load(f))


# A root config (no base) states its whole recipe; one with a base only what differs from it.
@pytest.mark.parametrize("name", [n for n in SHIPPED if config.BASE_KEY in own_values(n)])
def test_a_config_with_a_base_states_only_what_differs(name):
    own = own_values(name)
    base = own.pop(config.BASE_KEY)
    inherited = flat(json.loads(json.dumps(dataclasses.asdict(
        config.load(os.path.join(CONFIGS, base))))))
    same = sorted(k for k, v in own.items()
                  if k in inherited and json.loads(json.dumps(v)) == inherited[k])
    assert not same, f"{name} restates what {base} gives: {same}"


def test_unknown_key_is_named_with_its_path(tmp_path):
    p = write(tmp_path, "c.yaml", "data:\n  augment:\n    fliip: 0.5\n")
    with pytest.raises(config.ConfigError, match=r"unknown key data\.augment\.fliip"):
        config.load(p)


@pytest.mark.parametrize("in_base", [True, False])
def test_unknown_key_through_a_base_is_named_with_its_path(tmp_path, in_base):
    bad, good = "model:\n  dimm: 64\n", "model:\n  dim: 64\n"
    write(tmp_path, "base.yaml", bad if in_base else good)
    p = write(tmp_path, "c.yaml", "base: base.yaml\n" + (good if in_base else bad))
    with pytest.raises(config.ConfigError, match=r"unknown key model\.dimm \(known: "):
        config.load(p)


def test_base_chain_relative_to_each_file(tmp_path, monkeypatch):
    write(tmp_path, "a.yaml", "name: a\nseed: 1\ndata:\n  max_len: 128\n  buffer_len: 256\n")
    write(tmp_path, "sub/b.yaml", "base: ../a.yaml\nname: b\nseed: 2\n")
    c = write(tmp_path, "sub/deeper/c.yaml", "base: ../b.yaml\nname: c\n")
    monkeypatch.chdir(tmp_path / "sub" / "deeper")  # a base is found from its file, not the cwd
    cfg = config.load(c)
    assert (cfg.name, cfg.seed, cfg.data.max_len, cfg.data.buffer_len) == ("c", 2, 128, 256)
    assert "base" not in config.read_yaml(c)


def test_deep_merge_overrides_a_nested_key_and_keeps_its_siblings(tmp_path):
    write(tmp_path, "a.yaml", """
data:
  max_len: 128
  buffer_len: 256
  augment:
    flip: 0.5
    resample: {p: 0.5, rate: [0.8, 1.2]}
    temporal_mask: {p: 0.5, variants: ["1:0.2-0.4", "2:0.1-0.2"]}
""")
    c = write(tmp_path, "c.yaml", """
base: a.yaml
data:
  augment:
    resample: {p: 0.9}
    temporal_mask: {variants: ["4:0.05-0.1"]}
""")
    aug = config.load(c).data.augment
    assert (aug.resample.p, aug.resample.rate) == (0.9, (0.8, 1.2))
    assert aug.flip == 0.5 and config.load(c).data.max_len == 128
    assert (aug.temporal_mask.p, aug.temporal_mask.variants) == (0.5, ("4:0.05-0.1",))


def test_a_base_value_replaced_by_null(tmp_path):
    write(tmp_path, "a.yaml", "data:\n  synthetic: {train: 100}\n  scores: s.csv\n")
    c = write(tmp_path, "c.yaml", "base: a.yaml\ndata:\n  synthetic: null\n")
    data = config.load(c).data
    assert (data.synthetic, data.scores) == (None, "s.csv")


def test_overrides_apply_on_top_of_the_base(tmp_path):
    write(tmp_path, "a.yaml", "seed: 1\ndata:\n  fold: 1\n  max_len: 128\n  buffer_len: 256\n")
    c = write(tmp_path, "c.yaml", "base: a.yaml\ndata:\n  fold: 2\n")
    cfg = config.load(c, ["data.fold=3"])
    assert (cfg.seed, cfg.data.fold, cfg.data.max_len) == (1, 3, 128)


def test_base_cycle_is_an_error_naming_the_files(tmp_path):
    a = write(tmp_path, "a.yaml", "base: sub/b.yaml\n")
    write(tmp_path, "sub/b.yaml", "base: ../c.yaml\n")
    write(tmp_path, "c.yaml", "base: ./a.yaml\n")
    with pytest.raises(config.ConfigError, match="cycle") as e:
        config.load(a)
    message = str(e.value)
    assert all(name in message for name in ("a.yaml", "b.yaml", "c.yaml")), message


def test_a_file_that_is_its_own_base_is_a_cycle(tmp_path):
    a = write(tmp_path, "a.yaml", "base: a.yaml\n")
    with pytest.raises(config.ConfigError, match=r"a\.yaml: base files form a cycle"):
        config.load(a)


def test_missing_base_names_the_file_that_refers_to_it(tmp_path):
    write(tmp_path, "a.yaml", "base: gone.yaml\n")
    c = write(tmp_path, "c.yaml", "base: a.yaml\n")
    with pytest.raises(config.ConfigError, match=r"a\.yaml: base file .*gone\.yaml not found"):
        config.load(c)


@pytest.mark.parametrize("base", ["null", "[a.yaml]", "''"])
def test_base_must_name_a_file(tmp_path, base):
    c = write(tmp_path, "c.yaml", f"base: {base}\n")
    with pytest.raises(config.ConfigError, match=r"c\.yaml: base: expected a YAML file name"):
        config.load(c)


def test_bases_are_read_through_gfile(tmp_path):
    folder = f"ram://{uuid.uuid4().hex}"
    tf.io.gfile.makedirs(f"{folder}/sub")
    with tf.io.gfile.GFile(f"{folder}/a.yaml", "w") as f:
        f.write("name: a\ndata:\n  max_len: 128\n  buffer_len: 256\n")
    with tf.io.gfile.GFile(f"{folder}/sub/b.yaml", "w") as f:
        f.write("base: ../a.yaml\nname: b\n")
    cfg = config.load(f"{folder}/sub/b.yaml")
    assert (cfg.name, cfg.data.max_len) == ("b", 128)
    local = write(tmp_path, "c.yaml", f"base: {folder}/sub/b.yaml\nseed: 4\n")
    cfg = config.load(local)  # a local file may start from a remote one
    assert (cfg.name, cfg.seed, cfg.data.max_len) == ("b", 4, 128)
    with tf.io.gfile.GFile(f"{folder}/c.yaml", "w") as f:
        f.write("base: gone.yaml\n")
    with pytest.raises(config.ConfigError, match=f"{folder}/c.yaml: base file {folder}/gone"):
        config.load(f"{folder}/c.yaml")


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
        config.load(CFG_2, [override])


def test_exponent_numbers_without_a_dot_are_numbers(tmp_path):
    # YAML 1.1 (PyYAML) reads 6e-3 as the string "6e-3"; users write it like that
    cfg = config.load(CFG_2, ["train.learning_rate=6e-3", "train.weight_decay=1E-2"])
    assert (cfg.train.learning_rate, cfg.train.weight_decay) == (6e-3, 1e-2)
    p = write(tmp_path, "c.yaml", "train:\n  learning_rate: 2e-4\n")
    assert config.load(p).train.learning_rate == 2e-4


def test_overrides_apply():
    cfg = config.load(CFG_2, ["data.fold=2", "seed=7", "data.scores=null"])
    assert (cfg.data.fold, cfg.seed, cfg.data.scores) == (2, 7, None)


def test_defaults_are_the_first_place_round_2_model_and_recipe():
    """What the `Model` and `Train` docstrings say their defaults are."""
    squeezeformer = config.load(os.path.join(CONFIGS, "cfg_2_squeezeformer.yaml"))
    assert squeezeformer.model == config.Model() and squeezeformer.train == config.Train()
    assert config.load(os.path.join(CONFIGS, "cfg_1.yaml")).train == config.Train()
    aug = dataclasses.asdict(config.Augment())
    rates = [*(v for v in aug.values() if isinstance(v, float)),
             *(v["p"] for v in aug.values() if isinstance(v, dict) and "p" in v),
             *aug["part_drop"].values()]
    assert len(rates) == 12 and not any(rates)
