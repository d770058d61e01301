"""Draw what the augmentations do: a few sequences, several frames side by side, as PNG.

    python -m asl_keras.viz --config configs/cfg_2.yaml --records tfrecords/demo --out aug.png

Each sample gets two rows: the evaluation preprocessing (top) and one augmented draw (bottom),
at the same output frame positions. Hands and arms are drawn as skeletons, lips, nose and eyes as
points; missing (zero) points are not drawn.
"""

from __future__ import annotations

import argparse
import dataclasses

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from asl_keras import config, landmarks, vocab  # noqa: E402
from asl_keras.data import augment, pipeline, preprocess, records  # noqa: E402
from asl_keras.runtime import tf  # noqa: E402
from asl_keras.training.trainer import save_png  # noqa: E402

COLOURS = {"left hand": "tab:blue", "right hand": "tab:red", "face": "tab:gray",
           "pose": "tab:green"}


def draw_frame(ax, frame: np.ndarray) -> None:
    """One `[130, 3]` frame in normalised coordinates (image y points down)."""
    present = (frame != 0).any(-1)
    for a, b in landmarks.SKELETON_EDGES:
        if present[a] and present[b]:
            part = "pose" if a in landmarks.POSE_IDX else (
                "left hand" if a in landmarks.LEFT_HAND_IDX else "right hand")
            ax.plot(frame[[a, b], 0], frame[[a, b], 1], "-", lw=1, color=COLOURS[part])
    face = landmarks.FACE_IDX[present[landmarks.FACE_IDX]]
    ax.plot(frame[face, 0], frame[face, 1], ".", ms=1.5, color=COLOURS["face"])
    ax.set_xlim(-3, 3)
    ax.set_ylim(3, -3)
    ax.set_xticks([])
    ax.set_yticks([])


def render(cfg: config.Config, records_dir: str, out: str, samples: int = 3, frames: int = 6,
           seed: int = 0) -> str:
    """Write the comparison figure to `out` (any tf.io.gfile path) and return its path."""
    data = dataclasses.replace(cfg.data, records=records_dir)
    # the training pipeline's own examples: parsed records, then its sample and batch builders
    examples = list(tf.data.TFRecordDataset(records.list_shards(records_dir)[0])
                    .take(samples).map(records.parse))
    fig, axes = plt.subplots(2 * len(examples), frames,
                             figsize=(2 * frames, 4.2 * len(examples)), squeeze=False)
    table = pipeline.score_table({})
    for i, ex in enumerate(examples):
        plain, mask = preprocess.preprocess(ex["frames"], data.max_len)
        sample = pipeline.to_sample(ex, table, data.buffer_len)
        aug = augment.augment(sample, sample, tf.constant([seed, i]), data.augment)
        item = pipeline.to_batch_item(aug, ex, data.max_len)
        n_plain = int(mask.numpy().sum())
        n_aug = int(item["mask"].numpy().sum())
        text = vocab.decode(item["labels"].numpy())
        phrase = ex["phrase"].numpy().decode("utf-8")
        for row, x, n, title in ((2 * i, plain.numpy(), n_plain, phrase),
                                 (2 * i + 1, item["landmarks"].numpy(), n_aug, f"aug: {text}")):
            for j, t in enumerate(np.linspace(0, max(n - 1, 0), frames).astype(int)):
                draw_frame(axes[row, j], x[t])
                axes[row, j].set_title(f"t={t}" if j else f"{title[:28]}\nt={t}", fontsize=8)
    fig.tight_layout()
    save_png(fig, out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m asl_keras.viz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/cfg_2.yaml")
    p.add_argument("--records", required=True, help="a converted TFRecord folder")
    p.add_argument("--out", default="augmentations.png")
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(render(config.load(a.config), a.records, a.out, a.samples, a.frames, a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
