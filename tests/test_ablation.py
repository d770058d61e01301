"""The ablation runner's set-up: variants differ only where they should, budgets match."""

from __future__ import annotations

import dataclasses

import pytest

from asl_keras import ablation, config


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


@pytest.mark.parametrize("key", list(ablation.VARIANTS))
def test_variant_configs_validate(key):
    assert config.load(ablation.BASE_CONFIG, ablation.VARIANTS[key][1]).model.dim == 64
