"""The lattice detector: it finds a periodic surface's own period, sees a row of the weave shifted by
half a period (which ImageNet features miss), and rejects what it cannot judge instead of passing it."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from core.data.synthetic import DemoSetSize, generate_demo_set
from core.data.synthetic_styles import render_texture
from core.detectors.lattice.detector import (LatticeDetector, autocorrelation, detrended, lattice_vectors,
                                            power_spectrum, shifted)
from core.errors import BundleError
from core.runs.bundles import MANIFEST_DIGEST, MANIFEST_FILE, load_bundle, manifest_digest, save_bundle
from tests.unit.test_cli import assert_one_line_error, run_cli


def textures(seed: int, count: int, defect=None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([render_texture(rng, 128, defect)[0] for _ in range(count)])


@pytest.fixture(scope="module")
def fitted():
    return LatticeDetector().fit(textures(0, 40))


def test_a_moved_image_is_the_image_with_its_pixels_moved_and_its_edges_repeated():
    image = np.random.default_rng(0).uniform(0, 1, (20, 24))
    moved = shifted(image, (2, -3))                       # out[p] = image[p - (2, -3)]
    np.testing.assert_allclose(moved[2:, :-3], image[:-2, 3:], atol=1e-12)
    np.testing.assert_allclose(moved[0], np.concatenate([image[0, 3:], np.repeat(image[0, -1], 3)]), atol=1e-12)
    # half a pixel along a linear ramp lands halfway between its neighbours (cubic is exact on a line)
    ramp = np.tile(np.arange(24, dtype=float), (20, 1))
    np.testing.assert_allclose(shifted(ramp, (0, 0.5))[:, 3:-3], ramp[:, 3:-3] - 0.5, atol=1e-12)


def test_the_lattice_of_a_periodic_image_is_its_periods():
    rows, columns = np.mgrid[0:128, 0:128]
    image = np.cos(2 * np.pi * columns / 9.5) + np.cos(2 * np.pi * rows / 12.0)
    vectors, _ = lattice_vectors(autocorrelation(power_spectrum(detrended(image))), 2, 3, 32)
    lengths = sorted(np.hypot(vectors[:, 0], vectors[:, 1]))
    assert lengths == pytest.approx([9.5, 12.0], abs=0.15)


def test_a_row_of_the_weave_shifted_by_half_a_period_is_seen_and_located(fitted):
    good = textures(1, 12)
    broken, masks = zip(*(render_texture(rng, 128, "broken_thread")
                          for rng in [np.random.default_rng(100 + index) for index in range(12)]))
    result = fitted.score(np.concatenate([good, np.stack(broken)]), with_maps=True)
    scores = result.table["lattice_score"].to_numpy()
    labels = np.r_[np.zeros(12), np.ones(12)]
    assert roc_auc_score(labels, scores) >= 0.95
    threshold = fitted.default_decision_.threshold
    assert (scores[:12] >= threshold).sum() <= 1 and (scores[12:] >= threshold).mean() >= 0.75
    # the map peaks on the shifted row, not elsewhere in the image
    for anomaly_map, mask in zip(result.anomaly_maps[12:], masks):
        peak = np.unravel_index(np.argmax(anomaly_map), anomaly_map.shape)
        assert ndimage.binary_dilation(mask > 0, iterations=6)[peak]


def test_what_it_cannot_judge_is_rejected_not_passed(fitted):
    threshold = fitted.default_decision_.threshold
    blank = np.full((1, 128, 128), 0.5)
    noise = ndimage.gaussian_filter(np.random.default_rng(3).uniform(0, 1, (1, 128, 128)), (0, 1.5, 1.5))
    # the same weave at twice the period: self-consistent, but not this product
    rng = np.random.default_rng(4)
    coarse = np.stack([ndimage.zoom(render_texture(rng, 64)[0], 2, order=1)])
    scores = fitted.score(np.concatenate([blank, noise, coarse])).table["lattice_score"].to_numpy()
    assert (scores >= threshold).all(), scores


def test_a_saved_lattice_run_scores_as_it_did_and_a_damaged_one_is_refused(fitted, tmp_path):
    images = textures(5, 6)
    before = fitted.score(images, with_maps=True)
    save_bundle(fitted, tmp_path / "run")
    loaded = load_bundle(tmp_path / "run")
    after = loaded.score(images, with_maps=True)
    np.testing.assert_allclose(after.table.to_numpy(), before.table.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(after.anomaly_maps, before.anomaly_maps, rtol=1e-5, atol=1e-5)
    assert loaded.default_decision_ == fitted.default_decision_
    manifest_path = tmp_path / "run" / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["border_calibration"]["spread"][0] = -1.0
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)   # re-sealed: the state's own check must refuse it
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="lattice state is damaged"):
        load_bundle(tmp_path / "run")


def test_fitting_on_images_with_no_repeating_pattern_says_so():
    flat = np.full((10, 128, 128), 0.4)
    with pytest.raises(ValueError, match="periodic surfaces"):
        LatticeDetector().fit(flat)


def test_a_lattice_run_from_the_command_line(tmp_path):
    data = generate_demo_set(tmp_path / "texture", DemoSetSize(train_good=30, test_good=6, test_defect_per_type=2),
                             seed=7, style="texture")
    run = tmp_path / "run"
    result = run_cli("train", "--data", data, "--model", "lattice", "--out", run)
    assert result.returncode == 0, result.stderr
    scores = tmp_path / "scores.csv"
    result = run_cli("score", "--run", run, "--data", data, "--out", scores)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(scores)
    assert list(table.columns[:4]) == ["path", "label", "defect_type", "lattice_score"]
    assert set(table["verdict"]) <= {"OK", "REVIEW", "NG", "INVALID"}
    assert (table.loc[table["label"] == "defect", "verdict"] != "OK").mean() >= 0.75
    # an option that does not apply is refused in one line
    assert_one_line_error(run_cli("train", "--data", data, "--model", "lattice", "--channels", "3",
                                  "--out", tmp_path / "colour"), "lattice compares grey images")
    assert not (tmp_path / "colour").exists()
