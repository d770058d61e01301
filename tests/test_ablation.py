"""The ablation runner's set-up: variants differ only where they should, budgets match, the
protocol picks each variant's own rate and reports the seed spread."""

from __future__ import annotations

import dataclasses
import os

import pandas as pd
import pytest

from asl_keras import ablation, bench
from asl_keras.runtime import tf
from tests.paths import config_path


def variant(key, preset="default", factor=1.0, scale="cpu"):
    return ablation.variant_config(key, 0, preset, factor, scale)


def test_variants_add_one_element_each():
    a, c, d, e = (variant(k) for k in "acde")
    assert a.model.encoder == "squeezeformer" and c.model.encoder == "zipformer"
    assert c.model.schedules and c.model.constraints
    assert a.train.optimizer == c.train.optimizer == "adamw" and d.train.optimizer == "scaled_adam"
    assert d.train.schedule == "eden" and not d.model.stacks
    assert e.model.stacks and dataclasses.replace(e.model, stacks=()) == d.model
    assert all(v.train.epochs == a.train.epochs and v.data == a.data for v in (c, d, e))


@pytest.mark.parametrize("scale", list(ablation.SCALES))
def test_encoder_budgets_are_within_ten_percent(scale):
    sizes = {k: ablation.encoder_parameters(variant(k, scale=scale)) for k in ablation.VARIANTS}
    assert max(sizes.values()) <= 1.1 * min(sizes.values()), sizes


def test_the_gpu_scale_is_bigger_and_keeps_its_data_apart():
    cpu, gpu = variant("d"), variant("d", "hard", scale="gpu")
    assert gpu.model.dim > cpu.model.dim and gpu.train.epochs > cpu.train.epochs
    assert gpu.data.synthetic.train > cpu.data.synthetic.train
    assert gpu.data.synthetic.difficulty == "hard"
    assert "gpu" in gpu.data.records and gpu.data.records != variant("d", "hard").data.records


def test_presets_differ_in_their_data_only():
    default, hard = variant("a"), variant("a", "hard")
    assert hard.data.synthetic.difficulty == "hard"
    assert default.data.synthetic.difficulty == "default"
    assert hard.data.records != default.data.records
    assert hard.data.kaggle_dir != default.data.kaggle_dir
    assert dataclasses.replace(hard, data=default.data, name=default.name) == default


def test_the_learning_rate_factor_scales_the_variant_s_own_rate():
    assert variant("a", factor=2.0).train.learning_rate == pytest.approx(
        2 * variant("a").train.learning_rate)
    assert variant("d", factor=0.5).train.learning_rate == pytest.approx(0.0225)
    assert variant("d", factor=0.5).name != variant("d").name  # runs never share a folder


def row(key, seed, factor, score, preset="default"):
    return {"spec": ablation.RunSpec(key, preset, seed, factor), "score": score,
            "learning_rate": 0.003 * factor, "samples_per_s": 80.0, "curve": [(5, score)],
            "weights": None}


def test_best_factor_skips_diverged_runs():
    rows = [row("a", 0, 0.5, 0.4), row("a", 0, 1.0, float("nan")), row("a", 0, 2.0, 0.6)]
    assert ablation.best_factor(rows) == 2.0
    assert ablation.best_factor(rows[:2]) == 0.5


def test_separated_means_no_overlap_of_the_seed_ranges():
    assert ablation.separated([0.8, 0.82, 0.85], [0.7, 0.75, 0.79])
    assert not ablation.separated([0.8, 0.82, 0.85], [0.7, 0.75, 0.81])


def test_table_reports_search_mean_std_and_separation():
    rows = [row("a", 0, f, s) for f, s in ((0.5, 0.3), (1.0, 0.5), (2.0, 0.4))]
    rows += [row("a", 1, 1.0, 0.7), row("a", 2, 1.0, 0.6)]
    rows += [row("d", 0, f, s) for f, s in ((0.5, 0.8), (1.0, 0.9), (2.0, 0.2))]
    rows += [row("d", 1, 1.0, 0.85), row("d", 2, 1.0, 0.95)]
    rows += [row("d", 0, 1.0, 0.1, preset="hard")]  # another preset's rows stay out
    text = ablation.table(rows, "default", {"a": 3.0}, {"a": 190464, "d": 90513})
    a_line = next(line for line in text.splitlines() if line.startswith("| (a)"))
    d_line = next(line for line in text.splitlines() if line.startswith("| (d)"))
    assert "0.0015 -> 0.300, 0.003 -> 0.500, 0.006 -> 0.400" in a_line
    assert "| 0.600 ± 0.082 (n=3) | 0.500 / 0.700 / 0.600 | -0.300 | yes |" in a_line
    assert "190,464" in a_line and "| 3.0 |" in a_line
    assert "| 0.900 ± 0.041 (n=3) |" in d_line and "| - | - |" in d_line
    assert "best variant: (d)" in text and "0.100" not in text


def test_table_is_written_between_the_readme_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ablation.MARK_START}\nold\n{ablation.MARK_END}\noutro\n")
    text = "| new table |"
    assert ablation.write_readme(text, str(readme))
    content = readme.read_text()
    assert "old" not in content and text in content and content.endswith("outro\n")
    assert not ablation.write_readme(text, str(tmp_path / "missing.md"))


@pytest.fixture
def untrained_ablation(monkeypatch, tmp_path):
    """`ablation.run` without training (scores from a table) and a README of its own to update;
    returns (README path, the specs that ran). Runs from `tmp_path`."""
    monkeypatch.chdir(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"{ablation.MARK_START}\nold\n{ablation.MARK_END}\n")
    ran = []
    scores = {0.5: 0.4, 1.0: 0.3, 2.0: 0.2}

    def fake_run(spec, cfg):
        assert cfg == spec.config()
        ran.append(spec)
        return {**row(spec.variant, spec.seed, spec.lr_factor, scores[spec.lr_factor]
                      + spec.seed / 100, spec.preset), "spec": spec}

    monkeypatch.setattr(ablation, "run_variant", fake_run)
    monkeypatch.setattr(ablation, "encoder_parameters", lambda cfg: 1000)
    monkeypatch.setattr("asl_keras.training.run.prepare_records", lambda cfg: None)
    return readme, ran


def test_run_searches_then_trains_the_seeds_at_the_best_rate(untrained_ablation, tmp_path,
                                                             capsys):
    readme, ran = untrained_ablation
    text = ablation.run(seeds=(0, 1, 2), variants=("a",), presets=("default",),
                        out_dir=str(tmp_path / "bench"), table_path="ram://ablation/table.md")
    assert [(s.seed, s.lr_factor) for s in ran] == [(0, 0.5), (0, 1.0), (0, 2.0), (1, 0.5),
                                                   (2, 0.5)]
    assert "| 0.410 ± 0.008 (n=3) | 0.400 / 0.410 / 0.420 |" in text
    with tf.io.gfile.GFile("ram://ablation/table.md") as f:
        assert f.read() == text + "\n"
    assert (tmp_path / "bench" / "ablation_default.png").stat().st_size > 0
    assert "old" in readme.read_text()
    assert "README" not in capsys.readouterr().out


def test_run_updates_the_readme_when_asked(untrained_ablation, tmp_path, capsys):
    readme, _ = untrained_ablation
    kwargs = {"seeds": (0,), "variants": ("a",), "presets": ("default",),
              "out_dir": str(tmp_path / "bench"), "readme": str(readme)}
    text = ablation.run(**kwargs)
    assert text in readme.read_text()
    assert f"{readme}: ablation table updated" in capsys.readouterr().out
    readme.write_text("no markers\n")
    ablation.run(**kwargs)
    assert readme.read_text() == "no markers\n"
    assert "has no ablation markers" in capsys.readouterr().out


def test_the_base_config_is_the_repository_s():
    assert os.path.samefile(ablation.BASE_CONFIG, config_path("ablation.yaml"))


@pytest.mark.parametrize("flags,table,readme", [
    ([], None, None), (["--table", "t.md", "--update-readme", "R.md"], "t.md", "R.md")])
def test_bench_ablation_writes_files_only_when_named(monkeypatch, tmp_path, flags, table,
                                                     readme):
    monkeypatch.chdir(tmp_path)  # bench writes bench_out/ into the working directory
    calls = []
    monkeypatch.setattr(ablation, "run", lambda **kwargs: calls.append(kwargs) or "table")
    assert bench.main(["ablation", "--seeds", "0", "--variants", "a", "--jobs", "1",
                       *flags]) == 0
    assert calls == [{"seeds": [0], "variants": ["a"], "presets": ["default", "hard"],
                      "lr_factors": [0.5, 1.0, 2.0], "scale": "cpu", "jobs": 1,
                      "table_path": table, "readme": readme}]


@pytest.mark.parametrize("key", list(ablation.VARIANTS))
@pytest.mark.parametrize("preset", list(ablation.PRESETS))
def test_variant_configs_validate(key, preset):
    cfg = variant(key, preset)
    assert cfg.model.dim == 64 and cfg.data.synthetic is not None


def test_a_finished_run_is_reused_and_a_changed_one_trained_again(monkeypatch, tmp_path):
    """An interrupted ablation, started again, does not retrain what finished."""
    from asl_keras.training import trainer

    monkeypatch.chdir(tmp_path)
    fits = []

    class FakeTrainer:
        def __init__(self, cfg, verbose):
            self.cfg = cfg

        def fit(self):
            folder = trainer.run_dir(self.cfg)
            os.makedirs(folder, exist_ok=True)
            pd.DataFrame({"epoch": [1, 2], "seconds": [3.0, 2.0], "score": [None, 0.5]}
                         ).to_csv(os.path.join(folder, "history.csv"), index=False)
            fits.append(self.cfg.train.epochs)
            return {"score": 0.5}

    monkeypatch.setattr(trainer, "Trainer", FakeTrainer)
    monkeypatch.setattr(trainer, "steps_per_epoch", lambda cfg, replicas: 10)
    spec = ablation.RunSpec("a", "default", 0, 1.0)
    first = ablation.run_variant(spec, spec.config())
    assert first["curve"] == [(2, 0.5)] and first["samples_per_s"] == pytest.approx(80.0)
    assert ablation.run_variant(spec, spec.config()) == first and fits == [15]
    longer = dataclasses.replace(spec.config(), train=dataclasses.replace(
        spec.config().train, epochs=16))
    ablation.run_variant(spec, longer)
    assert fits == [15, 16]
