import matplotlib.image as mpimg

from asl_keras import config, viz
from tests.paths import config_path


def test_renders_plain_and_augmented_rows(synthetic_records, tmp_path):
    out = viz.render(config.load(config_path("cfg_2.yaml")), str(synthetic_records),
                     str(tmp_path / "aug.png"), samples=2, frames=4)
    img = mpimg.imread(out)
    assert img.shape[0] > img.shape[1] > 300  # 4 rows of 4 frames: taller than wide
    assert img[..., :3].std() > 0.05  # something was drawn
