"""The ablation runner's set-up: variants differ only where they should, budgets match."""

from __future__ import annotations

import dataclasses
import os

import pytest

from asl_keras import ablation, bench, config
from tests.paths import REPO, config_path


def variant(key):
    return config.load(ablation.BASE_CONFIG, ablation.VARIANTS[key][1])


def test_variants_add_one_element_each():
    a, b, c, d, e = (variant(k) for k in "abcde")
    assert a.model.encoder == "squeezeformer" and b.model.encoder == "zipformer"
    assert not b.model.schedules and not b.model.constraints
    assert c.model.schedules and c.model.constraints
    assert c.train.optimizer == "adamw" and d.train.optimizer == "scaled_adam"
    assert d.train.schedule == "eden" and not d.model.stacks
    assert e.model.stacks and dataclasses.replace(e.model, stacks=()) == d.model
    assert all(v.train.epochs == a.train.epochs and v.data == a.data for v in (b, c, d, e))


def test_encoder_budgets_are_within_ten_percent():
    sizes = {k: ablation.encoder_parameters(variant(k)) for k in "abcde"}
    assert max(sizes.values()) <= 1.1 * min(sizes.values()), sizes


def test_table_is_written_between_the_readme_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ablation.MARK_START}\nold\n{ablation.MARK_END}\noutro\n")
    runs = [{"variant": "a", "seed": s, "score": 0.5 + s / 10, "samples_per_s": 80.0}
            for s in (0, 1)]
    text = ablation.table(runs, {"a": 3.0}, {"a": 190464})
    assert "| 0.550 |" in text and "0.500 / 0.600" in text and "190,464" in text
    assert ablation.write_readme(text, str(readme))
    content = readme.read_text()
    assert "old" not in content and text in content and content.endswith("outro\n")
    assert not ablation.write_readme(text, str(tmp_path / "missing.md"))


@pytest.fixture
def untrained_ablation(monkeypatch, tmp_path):
    """`ablation.run` without training (fixed rows) and with a README of its own; returns the
    README's path. Runs from `tmp_path`, where nothing of the repository is."""
    monkeypatch.chdir(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"{ablation.MARK_START}\nold\n{ablation.MARK_END}\n")
    monkeypatch.setattr(ablation, "README", str(readme))
    monkeypatch.setattr(ablation, "run_variant", lambda key, seed, epochs: {
        "variant": key, "seed": seed, "score": 0.5, "samples_per_s": 80.0, "weights": None,
        "cfg": ablation.variant_config(key, seed, epochs)})
    monkeypatch.setattr(ablation, "encoder_parameters", lambda cfg: 1000)
    return readme


def test_run_writes_its_table_to_the_output_folder_and_leaves_the_readme(untrained_ablation,
                                                                          tmp_path, capsys):
    text = ablation.run(seeds=(0,), variants=("a",), out_dir=str(tmp_path / "bench"))
    assert "| (a) 1st-place Squeezeformer (2 blocks) | 1,000 | 0.500 |" in text
    assert (tmp_path / "bench" / "ablation.md").read_text() == text + "\n"
    assert "old" in untrained_ablation.read_text()
    assert "README" not in capsys.readouterr().out


def test_run_updates_the_readme_when_asked(untrained_ablation, tmp_path, capsys):
    text = ablation.run(seeds=(0,), variants=("a",), out_dir=str(tmp_path / "bench"),
                        update_readme=True)
    assert text in untrained_ablation.read_text()
    assert "README.md ablation table updated" in capsys.readouterr().out
    untrained_ablation.write_text("no markers\n")
    ablation.run(seeds=(0,), variants=("a",), out_dir=str(tmp_path / "bench"),
                 update_readme=True)
    assert untrained_ablation.read_text() == "no markers\n"
    assert "has no ablation markers" in capsys.readouterr().out


def test_the_base_config_and_the_readme_are_the_repository_s():
    assert os.path.samefile(ablation.BASE_CONFIG, config_path("ablation.yaml"))
    assert os.path.samefile(ablation.README, os.path.join(REPO, "README.md"))


@pytest.mark.parametrize("flags,update", [([], False), (["--update-readme"], True)])
def test_bench_ablation_updates_the_readme_only_with_its_flag(monkeypatch, tmp_path, flags,
                                                              update):
    monkeypatch.chdir(tmp_path)  # bench writes bench_out/ into the working directory
    calls = []
    monkeypatch.setattr(ablation, "run", lambda **kwargs: calls.append(kwargs) or "table")
    assert bench.main(["ablation", "--seeds", "0", "--variants", "a", *flags]) == 0
    assert calls == [{"seeds": [0], "epochs": None, "variants": ["a"], "update_readme": update}]


@pytest.mark.parametrize("key", list(ablation.VARIANTS))
def test_variant_configs_validate(key):
    assert config.load(ablation.BASE_CONFIG, ablation.VARIANTS[key][1]).model.dim == 64
