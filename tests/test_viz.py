import io

import matplotlib.image as mpimg

from asl_keras import config, viz
from asl_keras.runtime import tf
from tests.paths import config_path


def test_renders_plain_and_augmented_rows_to_any_gfile_path(synthetic_records):
    out = viz.render(config.load(config_path("cfg_2.yaml")), str(synthetic_records),
                     "ram://viz/aug.png", samples=2, frames=4)
    with tf.io.gfile.GFile(out, "rb") as f:
        img = mpimg.imread(io.BytesIO(f.read()), format="png")
    assert img.shape[0] > img.shape[1] > 300  # 4 rows of 4 frames: taller than wide
    assert img[..., :3].std() > 0.05  # something was drawn
