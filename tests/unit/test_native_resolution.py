"""Images as they come off the line: working resolution, training on patches, colour, aspect ratio."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.datasets import open_dataset
from core.data.native import autoencoder_resolution, default_channels, native_long_side
from tests.unit.test_cli import run_cli
from core.data.synthetic import DemoSetSize, generate_demo_set
from core.detectors.autoencoder.detector import RandomPatches, ResidualDetector
from core.detectors.common.residuals import residual_maps
from core.evaluation.metrics import threshold_summary
from core.runs.bundles import load_bundle, save_bundle

# patches small enough to train in seconds; the recorded benchmark uses the defaults
QUICK_PATCHES = dict(patch_size=32, patches_per_epoch=512, batch_size=32, widths=(8, 16, 16, 16), epochs=12)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _defect_auroc(detector, root: Path, defect_type: str) -> float:
    from core.evaluation.scoring import score_samples

    with open_dataset(root) as data:
        test = [s for s in data.test if s.label == "good" or s.defect_type == defect_type]
        scored = score_samples(detector, data, test)
    return threshold_summary(scored.table[detector.primary_score].to_numpy(), scored.table["label"].to_numpy())[
        "image_auroc"]


def _fitted(root: Path, **parameters) -> ResidualDetector:
    detector = ResidualDetector(**parameters)
    with open_dataset(root) as data:
        detector.fit(data.load(data.train_good, detector.input_size, detector.channels).images)
    return detector


@pytest.fixture(scope="module")
def fine_defects(tmp_path_factory):
    """The high-resolution demo variant at 256 px: pinholes and hairline cracks a few pixels across."""
    return generate_demo_set(tmp_path_factory.mktemp("fine") / "set", DemoSetSize(24, 10, 10), size=256, seed=5)


@pytest.mark.slow
def test_a_pinhole_is_found_at_native_resolution_and_lost_at_64_px(fine_defects):
    # the default network on 64 px patches, fewer and smaller epochs than the defaults (about 30 s)
    native = _fitted(fine_defects, input_size=256, patch_size=64, patches_per_epoch=512, batch_size=16, epochs=30)
    shrunk = _fitted(fine_defects, input_size=64, epochs=30, batch_size=8)
    at_native, at_64 = _defect_auroc(native, fine_defects, "pinhole"), _defect_auroc(shrunk, fine_defects, "pinhole")
    assert at_native >= 0.9, at_native
    assert at_64 <= 0.75, at_64


def test_a_patch_trained_network_scores_whole_images_and_survives_a_bundle(fine_defects, tmp_path):
    detector = _fitted(fine_defects, input_size=200, **(QUICK_PATCHES | {"epochs": 2}))  # 200: not a multiple of 16
    assert detector.model_.input_shape[1:] == (None, None, 1)
    with open_dataset(fine_defects) as data:
        images = data.load(data.test[:4], 200).images
    result = detector.score(images, with_maps=True)
    assert result.anomaly_maps.shape == result.residuals.shape == result.reconstructions.shape == (4, 200, 200)
    save_bundle(detector, tmp_path / "run", {})
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["parameters"]["patch_size"] == 32 and manifest["input_size"] == 200
    reloaded = load_bundle(tmp_path / "run")
    np.testing.assert_allclose(reloaded.score(images).table["map_max"], result.table["map_max"], rtol=1e-5)


def test_an_epoch_costs_its_crops_whatever_the_image_size():
    """Training cost depends on the number of crops: an epoch of 512 px images is as many crops of the same
    size as an epoch of 128 px images, and the same seed draws the same crops."""
    rng = np.random.default_rng(0)
    small, large = rng.uniform(size=(10, 128, 128)), rng.uniform(size=(10, 512, 512))
    for images in (small, large):
        patches = RandomPatches(images.astype(np.float32), 64, 2048, 32, seed=1)
        crops, target = patches[0]
        assert len(patches) == 64 and crops.shape == (32, 64, 64, 1) and crops is target
    first, again = RandomPatches(large, 64, 2048, 32, seed=1)[3][0], RandomPatches(large, 64, 2048, 32, seed=1)[3][0]
    np.testing.assert_array_equal(first, again)


def test_a_colour_only_stain_is_found_in_colour_and_not_in_grey(tmp_path):
    root = generate_demo_set(tmp_path / "colour", DemoSetSize(60, 16, 12), size=64, seed=2, colour=True)
    # 30 epochs: colour 0.94-0.95 and grey 0.52-0.56 from 25 to 35 epochs, as at 60
    colour = _fitted(root, input_size=64, channels=3, epochs=30, batch_size=16)
    grey = _fitted(root, input_size=64, channels=1, epochs=30, batch_size=16)
    in_colour, in_grey = _defect_auroc(colour, root, "colour_stain"), _defect_auroc(grey, root, "colour_stain")
    assert in_colour >= 0.9, in_colour
    assert in_grey <= 0.75, in_grey
    with open_dataset(root) as data:
        assert colour.score(data.load(data.test[:2], 64, 3).images, with_maps=True).reconstructions.shape == (
            2, 64, 64, 3)


def test_colour_residual_is_the_signed_rms_across_channels():
    image = np.full((1, 4, 4, 3), 0.5, np.float32)
    # a hue change of the same luma: the mean channel error is ~0, the residual is not
    shifted = image + np.array([0.1, -0.04, -0.05], np.float32)
    residual = residual_maps(shifted, image)
    np.testing.assert_allclose(np.abs(residual), np.sqrt(np.mean(np.square([0.1, -0.04, -0.05]))), rtol=1e-5)
    grey = residual_maps(image[..., 0] + 0.2, image[..., 0])
    np.testing.assert_allclose(grey, 0.2, rtol=1e-5)


def test_a_non_square_image_is_fitted_without_stretching_and_its_mask_follows(tmp_path):
    picture = np.tile(np.linspace(40, 200, 300, dtype=np.uint8), (100, 1))   # a 3:1 frame with a gradient
    picture[40:60, 140:160] = 255                                            # and a 20×20 bright square
    mask = np.zeros_like(picture)
    mask[40:60, 140:160] = 255
    for folder in ("train/good", "test/spot", "ground_truth/spot"):
        (tmp_path / folder).mkdir(parents=True)
    for index in range(8):
        Image.fromarray(np.tile(np.linspace(40, 200, 300, dtype=np.uint8), (100, 1))).save(
            tmp_path / "train" / "good" / f"{index}.png")
    Image.fromarray(picture).save(tmp_path / "test" / "spot" / "000.png")
    Image.fromarray(mask).save(tmp_path / "ground_truth" / "spot" / "000_mask.png")
    with open_dataset(tmp_path) as data:
        image = data.load(data.test, 96).images[0]
        fitted_mask = data.load_masks(data.test, 96)[0]
    rows, columns = np.nonzero(image > 0.95)
    assert np.ptp(rows) == np.ptp(columns)   # still a square, not a 3:1 rectangle
    assert image.shape == fitted_mask.shape == (96, 96)
    np.testing.assert_array_equal(fitted_mask > 0.5, image > 0.95)   # the mask lies on the square
    assert np.allclose(image[0], image[30])   # the padding above repeats the edge row: no dark band


def test_the_working_resolution_defaults_to_the_native_size_up_to_512(tmp_path):
    def folder(name, size, colour=False):
        root = tmp_path / name
        root.mkdir()
        for index in range(3):
            array = np.random.default_rng(index).integers(0, 255, (size[1], size[0], 3) if colour else size[::-1],
                                                          dtype=np.uint8)
            Image.fromarray(array).save(root / f"{index}.png")
        return sorted(root.iterdir())

    assert autoencoder_resolution(folder("hd", (1920, 1080))) == (512, 64)
    assert autoencoder_resolution(folder("cast", (300, 300))) == (300, 64)
    assert autoencoder_resolution(folder("small", (64, 64))) == (64, None)   # the original whole-image recipe
    assert autoencoder_resolution(folder("odd", (50, 40))) == (50, 48)
    assert native_long_side(folder("wide", (400, 100))) == 400
    assert default_channels(folder("rgb", (32, 32), colour=True)) == 3
    assert default_channels(folder("grey", (32, 32))) == 1
    with pytest.raises(ValueError, match="multiple of 16"):
        autoencoder_resolution(folder("x", (256, 256)), patch_size=40)


def test_train_on_a_high_resolution_set_from_the_command_line(fine_defects, tmp_path):
    run = tmp_path / "run"
    completed = run_cli("train", "--data", fine_defects, "--out", run, "--epochs", "1", "--patch-size", "32", "--widths",
                        "8,16,16,16")
    assert completed.returncode == 0, completed.stderr
    assert "256 px grey, on random 32 px patches; at most about" in completed.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["input_size"] == 256 and manifest["parameters"]["patch_size"] == 32 and manifest["channels"] == 1
    scores = tmp_path / "scores.csv"
    completed = run_cli("score", "--run", run, "--data", fine_defects / "test" / "pinhole", "--out", scores)
    assert completed.returncode == 0, completed.stderr
    assert len(scores.read_text().splitlines()) == 11


def test_a_cosine_schedule_ends_at_a_rate_of_zero_and_the_default_stays_constant():
    """The learning-rate decay the training benchmark measures (benchmarks/training_speed.py): the rate falls from its
    start to zero over the epochs asked for; without it the rate never moves."""
    images = np.random.default_rng(0).uniform(0.3, 0.7, (12, 64, 64)).astype(np.float32)
    quick = dict(input_size=64, patch_size=32, patches_per_epoch=64, batch_size=32, widths=(8, 16), epochs=2,
                 patience=5, learning_rate=4e-3)
    decayed = ResidualDetector(**quick, learning_rate_decay="cosine").fit(images)
    constant = ResidualDetector(**quick).fit(images)
    assert float(decayed.model_.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)
    assert float(constant.model_.optimizer.learning_rate) == pytest.approx(4e-3)
    assert ResidualDetector().learning_rate_decay == "constant"
    with pytest.raises(ValueError, match="learning_rate_decay"):
        ResidualDetector(**quick, learning_rate_decay="step").fit(images)


@pytest.mark.parametrize("arguments, message", [
    (["--model", "padim", "--patch-size", "32"], "--patch-size applies to --model ncae and cae only"),
    (["--patch-size", "40"], "multiple of 16"),
])
def test_options_that_cannot_apply_are_refused(small_demo_dir, tmp_path, arguments, message):
    completed = run_cli("train", "--data", small_demo_dir, "--out", tmp_path / "run", *arguments)
    assert completed.returncode == 2 and message in completed.stderr, completed.stderr
    assert "Traceback" not in completed.stderr


def test_draem_reads_colour_when_told_and_its_run_keeps_it(tmp_path):
    from core.detectors.draem.detector import DraemDetector
    from tests.unit.test_every_detector_is_a_run import TINY_DRAEM

    root = generate_demo_set(tmp_path / "colour", DemoSetSize(12, 2, 1), size=32, seed=4, colour=True)
    detector = DraemDetector(**TINY_DRAEM, channels=3)
    with open_dataset(root) as data:
        detector.fit(data.load(data.train_good, 32, 3).images)
        images = data.load(data.test, 32, 3).images
    result = detector.score(images, with_maps=True)
    assert result.reconstructions.shape == (len(images), 32, 32, 3) and result.residuals.shape == (len(images), 32, 32)
    save_bundle(detector, tmp_path / "run", {})
    reloaded = load_bundle(tmp_path / "run")
    assert reloaded.channels == 3
    np.testing.assert_allclose(reloaded.score(images).table["draem_score"], result.table["draem_score"], rtol=1e-5)


def test_a_run_trained_the_old_way_still_loads_and_scores():
    """The shipped demo run predates patches and channels: whole 64 px grey images, and so it stays."""
    root = Path(__file__).resolve().parents[2] / "assets" / "demo_model"
    manifest = json.loads((root / "manifest.json").read_text())
    assert "patch_size" not in manifest["parameters"] and "channels" not in manifest
    detector = load_bundle(root)
    assert detector.patch_size is None and detector.channels == 1
    assert detector.model_.input_shape[1:] == (64, 64, 1)
    with open_dataset("demo") as data:
        samples = [s for s in data.test if s.label == "good"][:3] + [s for s in data.test if s.label == "defect"][:3]
        table = detector.score(data.load(samples, 64).images).table
    assert np.isfinite(table.to_numpy()).all()
    assert table["map_max"][3:].min() > table["map_max"][:3].max()   # defects still above good parts
