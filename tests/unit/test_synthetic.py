import hashlib

import numpy as np

from core.data.datasets import open_dataset
from core.evaluation.metrics import ThresholdTable
import pytest

from core.data.synthetic import DEFECT_TYPES, STYLES, DemoSetSize, generate_demo_set, render_part


def _digest(root):
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    size = DemoSetSize(4, 2, 1)
    first = generate_demo_set(tmp_path / "a", size, size=48, seed=7)
    second = generate_demo_set(tmp_path / "b", size, size=48, seed=7)
    third = generate_demo_set(tmp_path / "c", size, size=48, seed=8)
    assert _digest(first) == _digest(second) != _digest(third)


def test_demo_set_is_mvtec_layout_with_a_mask_per_defect(small_demo_dir):
    dataset = open_dataset(small_demo_dir)
    summary = dataset.summary()
    assert summary["layout"] == "mvtec"
    assert summary["defect_types"] == {kind: 2 for kind in DEFECT_TYPES}
    assert summary["masks"] == summary["test_defect"]


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_defect_type_marks_pixels_and_good_parts_mark_none(style):
    render, defect_types = STYLES[style]
    rng = np.random.default_rng(1)
    for _ in range(4):
        assert render(rng, 64, None)[1].sum() == 0
        for kind in defect_types:
            image, mask = render(rng, 64, kind)
            assert 3 <= mask.sum() < 0.1 * mask.size, (style, kind)
            assert 0.0 <= image.min() and image.max() <= 1.0


def test_mean_brightness_alone_does_not_find_defects():
    rng = np.random.default_rng(0)
    good = [render_part(rng, 64, None)[0].mean() for _ in range(60)]
    defect = [render_part(rng, 64, kind)[0].mean() for kind in DEFECT_TYPES for _ in range(16)]
    table = ThresholdTable(np.r_[good, defect], np.r_[["good"] * 60, ["defect"] * len(defect)])
    assert table.auroc() < 0.70


@pytest.mark.parametrize("style", ["texture", "object"])
def test_other_styles_write_an_mvtec_set_with_a_mask_per_defect(style, tmp_path):
    _, defect_types = STYLES[style]
    root = generate_demo_set(tmp_path / style, DemoSetSize(3, 2, 1), size=64, seed=1, style=style)
    summary = open_dataset(root).summary()
    assert summary["defect_types"] == {kind: 1 for kind in defect_types}
    assert summary["masks"] == len(defect_types)


def test_defects_change_the_pixels_their_masks_mark():
    for style in STYLES:
        render, defect_types = STYLES[style]
        for kind in defect_types:
            good, _ = render(np.random.default_rng(11), 64, None)
            defective, mask = render(np.random.default_rng(11), 64, kind)
            inside = np.abs(defective - good)[mask > 0].mean()
            assert inside > 0.05, (style, kind)
