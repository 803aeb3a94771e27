"""The ImageNet backbone that ships in a pip package: read without PyTorch, without running its pickle."""

import os
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from core.detectors.features import efficientnet_lite
from core.detectors.features.torch_weights import (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, DamagedWeightsFile,
                                         UnsafeWeightsFile, read_legacy_state_dict)

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def own_keras_home(tmp_path_factory):
    """An empty Keras cache of this module's own: the tests below look at what the conversion writes there."""
    from tests.conftest import keras_home_at

    yield from keras_home_at(tmp_path_factory.mktemp("own_keras_home"))


@pytest.fixture(scope="module")
def classifier(own_keras_home):
    return efficientnet_lite.efficientnet_lite0(include_top=True)


def _centre_crop(picture: np.ndarray) -> np.ndarray:
    """ImageNet evaluation's preprocessing: short side to 256 px, centre 224 px, RGB in [0, 1]."""
    image = Image.fromarray(picture).convert("RGB")
    scale = 256 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    return np.asarray(image.crop((left, top, left + 224, top + 224)), np.float32) / 255.0


# ImageNet class indices: 281-285 the domestic cats; 967 espresso, 968 cup, 504 coffee mug;
# 657 missile, 744 projectile, 812 space shuttle
@pytest.mark.parametrize("photo, expected", [("chelsea", {281, 282, 283, 284, 285}), ("coffee", {967, 968, 504}),
                                             ("rocket", {657, 744, 812})])
def test_converted_network_names_known_photographs_in_its_top_five(classifier, photo, expected):
    logits = np.asarray(classifier.predict_on_batch(_centre_crop(getattr(skimage_data, photo)())[None]))[0]
    top_five = set(np.argsort(logits)[::-1][:5].tolist())
    assert top_five & expected, (photo, sorted(top_five))
    assert int(np.argmax(logits)) in expected


def _assert_gives_the_classifiers_features(features, classifier):
    import keras

    names = ("block_2_out", "block_4_out", "bn1_relu6")
    folded = keras.Model(features.input, [features.get_layer(name).output for name in names])
    unfolded = keras.Model(classifier.input, [classifier.get_layer(name).output for name in names])
    photo = _centre_crop(skimage_data.chelsea())[None]
    for batch in (photo, np.full((1, 96, 128, 3), 0.5, np.float32)):
        for ours, theirs in zip(folded.predict_on_batch(batch), unfolded.predict_on_batch(batch)):
            theirs = np.asarray(theirs)
            assert np.abs(np.asarray(ours) - theirs).max() <= 1e-5 * np.abs(theirs).max()


def test_the_features_network_folds_its_batch_norms_and_gives_the_classifiers_features(classifier):
    """What the detectors read (the network without its top) has no batch norm left, and its features are the
    full network's, layer by layer, to float32 round-off: on a photograph and on a flat grey frame; folded anew
    and read back from the folded copy it keeps."""
    folded = efficientnet_lite.folded_weights_path(efficientnet_lite.source_weights_path())
    folded.unlink(missing_ok=True)
    features = efficientnet_lite.efficientnet_lite0(include_top=False)
    assert not [layer for layer in features.layers if layer.__class__.__name__ == "BatchNormalization"]
    assert folded.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    _assert_gives_the_classifiers_features(features, classifier)
    _assert_gives_the_classifiers_features(efficientnet_lite.efficientnet_lite0(include_top=False), classifier)


def test_a_damaged_folded_copy_is_folded_again(classifier):
    folded = efficientnet_lite.folded_weights_path(efficientnet_lite.source_weights_path())
    efficientnet_lite.efficientnet_lite0(include_top=False)
    folded.write_bytes(b"not an HDF5 file")
    _assert_gives_the_classifiers_features(efficientnet_lite.efficientnet_lite0(include_top=False), classifier)
    assert folded.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"


def test_conversion_is_cached_by_the_source_files_hash_and_reloads_the_same(classifier, own_keras_home):
    cached = efficientnet_lite.converted_weights_path(efficientnet_lite.source_weights_path())
    folded = efficientnet_lite.folded_weights_path(efficientnet_lite.source_weights_path())
    assert cached.parent == own_keras_home / "models" and cached.is_file()
    # no temporary left behind: the conversion, and the folded features network once it was asked for
    assert {path.name for path in cached.parent.iterdir()} <= {cached.name, folded.name}
    again = efficientnet_lite.efficientnet_lite0(include_top=True)
    probe = np.random.default_rng(0).uniform(0, 1, (1, 96, 96, 3)).astype(np.float32)
    np.testing.assert_allclose(again.predict_on_batch(probe), classifier.predict_on_batch(probe), rtol=1e-5, atol=1e-5)


def test_a_damaged_cached_conversion_is_made_again(classifier, own_keras_home):
    cached = efficientnet_lite.converted_weights_path(efficientnet_lite.source_weights_path())
    cached.write_bytes(b"not an HDF5 file")
    again = efficientnet_lite.efficientnet_lite0(include_top=True)
    probe = np.random.default_rng(1).uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(again.predict_on_batch(probe), classifier.predict_on_batch(probe), rtol=1e-5, atol=1e-5)
    assert cached.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"


def _legacy_file(payload: bytes, keys=(), storages=b"") -> bytes:
    header = b"".join(pickle.dumps(value, protocol=2) for value in (
        LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, {"little_endian": True, "protocol_version": 1001}))
    return header + payload + pickle.dumps(list(keys), protocol=2) + storages


class _RunsACommand:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-weights",))


def test_unpickler_refuses_any_other_global_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hostile = tmp_path / "hostile.pth"
    hostile.write_bytes(_legacy_file(pickle.dumps({"conv.weight": _RunsACommand()}, protocol=2)))
    with pytest.raises(UnsafeWeightsFile, match="system"):
        read_legacy_state_dict(hostile)
    assert not (tmp_path / "pwned-by-weights").exists()
    # the key list after the state dict is read with the same refusal
    sneaky = tmp_path / "sneaky.pth"
    sneaky.write_bytes(_legacy_file(pickle.dumps({}, protocol=2), keys=[_RunsACommand()]))
    with pytest.raises(UnsafeWeightsFile):
        read_legacy_state_dict(sneaky)
    assert not (tmp_path / "pwned-by-weights").exists()


def test_a_truncated_or_foreign_file_is_refused_in_one_sentence(tmp_path):
    source = efficientnet_lite.source_weights_path().read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(source[:len(source) // 2])
    with pytest.raises(DamagedWeightsFile, match="truncated|disagrees"):
        read_legacy_state_dict(truncated)
    foreign = tmp_path / "foreign.pth"
    foreign.write_bytes(b"PK\x03\x04" + bytes(100))      # a zip-format torch.save file, or anything else
    with pytest.raises(DamagedWeightsFile):
        read_legacy_state_dict(foreign)


def test_state_dict_tensors_keep_their_shapes_and_values(tmp_path):
    state = read_legacy_state_dict(efficientnet_lite.source_weights_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_fc.weight"].shape == (1000, 1280)
    assert all(np.isfinite(value).all() for value in state.values())
    variances = state["_bn0.running_var"]      # a wrong byte offset would not give non-negative variances
    assert (variances >= 0).all() and (variances > 0).mean() > 0.8


def _unicode(text: str) -> bytes:
    return b"X" + struct.pack("<I", len(text)) + text.encode()


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def test_legacy_storage_bytes_are_cut_into_tensors_with_their_strides(tmp_path):
    # what torch.save writes for {"w": t}, t a 2×3 float tensor stored transposed (strides (1, 2)) at
    # offset 1 of a 7-float storage; written opcode by opcode, as no torch is installed to write it
    storage = (b"(" + _unicode("storage") + b"ctorch\nFloatStorage\n" + _unicode("k0") + _unicode("cpu") + _int(7)
               + b"Nt" + b"Q")
    tensor = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + _int(1) + _int(2) + _int(3) + b"\x86"
              + _int(1) + _int(2) + b"\x86" + b"\x89" + b"}" + b"tR")
    payload = b"\x80\x02}" + _unicode("w") + tensor + b"s."
    values = np.arange(7, dtype="<f4")
    path = tmp_path / "strided.pth"
    path.write_bytes(_legacy_file(payload, ["k0"], struct.pack("<q", 7) + values.tobytes()))
    np.testing.assert_array_equal(read_legacy_state_dict(path)["w"], np.array([[1, 3, 5], [2, 4, 6]], np.float32))
    # the same tensor claiming a 3×3 shape reaches past the storage's end: refused, not read out of bounds
    path.write_bytes(_legacy_file(payload.replace(_int(2) + _int(3) + b"\x86", _int(3) + _int(3) + b"\x86"),
                                  ["k0"], struct.pack("<q", 7) + values.tobytes()))
    with pytest.raises(DamagedWeightsFile, match="outside|more elements than its storage"):
        read_legacy_state_dict(path)


def test_border_calibration_puts_border_and_inner_patches_of_good_images_on_one_scale():
    from core.detectors.common.border import BorderCalibration, border_rings

    rng = np.random.default_rng(0)
    rings = border_rings(12, 12, 4)
    # good images: patches near the border sit farther from the bank (padding), as a CNN's do
    good = rng.gamma(4.0, 0.25, (30, 12, 12)) * (1 + 1.5 * (rings == 0)) * (1 + 0.5 * (rings == 1))
    calibration = BorderCalibration.fit(good[:20])
    fresh = calibration.apply(good[20:])
    assert abs(fresh[:, rings == 0].mean() - fresh[:, rings == 4].mean()) < 0.3
    # raw maxima sit on the border ...
    assert np.isin(good[20:].reshape(10, -1).argmax(1), np.flatnonzero(rings.ravel() == 0)).mean() > 0.8
    # ... so an inner patch as far from the bank as the border's worst is a defect, and now outranks them
    defect = good[20].copy()
    defect[6, 6] = good[20].max()
    assert calibration.apply(defect[None])[0].argmax() == 6 * 12 + 6


def test_memory_bank_on_packaged_imagenet_features_finds_the_demo_defects(keras_home, small_demo_dir):
    from core.evaluation.evaluate import evaluate_detector, load_test_images
    from core.data.datasets import open_dataset
    from core.detectors.memory_bank.detector import MEMORY_BANK_COLUMN, MemoryBankDetector
    from core.detectors.common.patch_features import PACKAGED_BACKBONE

    detector = MemoryBankDetector(backbone=PACKAGED_BACKBONE, coreset_ratio=0.1)
    with open_dataset(small_demo_dir) as data:
        good = data.load(data.train_good, detector.input_size).images
        test = load_test_images(data, detector.input_size)
    detector.fit(good)
    assert detector.input_size == 224 and detector.border_calibration_ is not None
    figures, result = evaluate_detector(detector, test, MEMORY_BANK_COLUMN)
    assert figures["image_auroc"] > 0.9 and figures["pixel_auroc"] > 0.9
    assert result.anomaly_maps.shape == (len(test.images), 224, 224)
    # searched by cells, yet every image score is what a search of the whole bank gives
    from core.detectors.common.bank_search import CellSearch

    assert isinstance(detector.bank_search_, CellSearch) and not detector.bank_search_.exhaustive
    detector.bank_search_ = CellSearch(detector.memory_bank_, probed_cells=None)
    whole_bank = detector.score(test.images).table[MEMORY_BANK_COLUMN].to_numpy()
    np.testing.assert_allclose(whole_bank, result.table[MEMORY_BANK_COLUMN].to_numpy(), rtol=1e-6, atol=1e-6)
    # the default decision was set on held-out good images: it rejects few of the good test parts
    good_scores = result.table[MEMORY_BANK_COLUMN].to_numpy()[test.labels == "good"]
    assert (good_scores >= detector.default_decision_.threshold).mean() <= 0.34


def test_warming_the_shared_network_builds_nothing_twice_and_changes_no_score(keras_home, small_demo_dir,
                                                                              monkeypatch):
    """The dashboard warms the ImageNet detectors' network in the background: the fit after it uses that network, with
    no layer scales fixed by the blank frames, and scores exactly as a fit on a network nobody warmed; and a network
    that has been built and run is not run again (it would hold the lock that the next fit waits for)."""
    from core.data.datasets import open_dataset
    from core.detectors.common import patch_features
    from core.detectors.common.patch_features import PACKAGED_BACKBONE, imagenet_features, warm_packaged_network
    from core.detectors.padim.detector import PADIM_COLUMN, PadimDetector

    with open_dataset(small_demo_dir) as data:
        good = data.load(data.train_good, 224, 3).images
        test = data.load(data.test, 224, 3).images
    monkeypatch.setattr(patch_features, "_PACKAGED_NETWORKS", {})   # as in a server that has built none
    cold = PadimDetector().fit(good)

    monkeypatch.setattr(patch_features, "_PACKAGED_NETWORKS", {})
    warm_packaged_network()
    warmed = imagenet_features(PACKAGED_BACKBONE)
    assert warmed.layer_scales is None
    fitted = PadimDetector().fit(good)
    assert fitted.extractor_.network is warmed.network
    np.testing.assert_array_equal(fitted.score(test).table[PADIM_COLUMN], cold.score(test).table[PADIM_COLUMN])

    runs = []
    monkeypatch.setattr(warmed.network, "predict_on_batch", lambda *args, **kwargs: runs.append(args))
    warm_packaged_network()
    assert runs == []


def test_kept_outputs_spare_the_network_a_second_run_and_change_no_score(keras_home, small_demo_dir, monkeypatch):
    """The dashboard keeps the shared network's outputs: a detector fitted and scoring on images another has just
    read runs the network on no batch again and scores exactly as without them, within the memory allowed."""
    from core.data.datasets import open_dataset
    from core.detectors.common import patch_features
    from core.detectors.padim.detector import PADIM_COLUMN, PadimDetector

    with open_dataset(small_demo_dir) as data:
        good = data.load(data.train_good, 224, 3).images
        test = data.load(data.test, 224, 3).images
    monkeypatch.setattr(patch_features, "_KEPT_OUTPUTS", patch_features._KeptOutputs())   # as in a command
    assert patch_features._KEPT_OUTPUTS.limit_bytes == 0
    patch_features.keep_backbone_outputs(64 * 2**20)
    first = PadimDetector().fit(good)   # the network runs, and its outputs are kept
    computed = first.score(test).table[PADIM_COLUMN]
    runs = []
    network, run = first.extractor_.network, first.extractor_.network.predict_on_batch
    monkeypatch.setattr(network, "predict_on_batch", lambda *args, **kwargs: runs.append(1) or run(*args, **kwargs))
    np.testing.assert_array_equal(PadimDetector().fit(good).score(test).table[PADIM_COLUMN], computed)
    assert runs == [] and 0 < patch_features._KEPT_OUTPUTS.bytes <= 64 * 2**20
    patch_features.keep_backbone_outputs(0)   # stopped: everything kept is let go
    assert patch_features._KEPT_OUTPUTS.bytes == 0 and not patch_features._KEPT_OUTPUTS.entries


def test_padim_on_packaged_features_finds_the_demo_defects_and_sets_its_own_threshold(keras_home, small_demo_dir):
    from core.evaluation.evaluate import evaluate_detector, load_test_images
    from core.data.datasets import open_dataset
    from core.detectors.padim.detector import PADIM_COLUMN, PadimDetector

    detector = PadimDetector()
    with open_dataset(small_demo_dir) as data:
        good = data.load(data.train_good, detector.input_size).images
        test = load_test_images(data, detector.input_size)
    detector.fit(good)
    # one Gaussian per position of stage 3's stride-8 grid, over its 40 channels
    assert detector.grid_shape_ == (28, 28) and detector.precision_.shape == (28, 28, 40, 40)
    figures, result = evaluate_detector(detector, test, PADIM_COLUMN)
    assert figures["image_auroc"] > 0.9 and figures["pixel_auroc"] > 0.9
    assert result.anomaly_maps.shape == (len(test.images), 224, 224)
    scores = result.table[PADIM_COLUMN].to_numpy()
    assert (scores[test.labels == "good"] >= detector.default_decision_.threshold).mean() <= 0.34
    # a good image scores the same alone as in a batch: nothing is normalised per batch
    alone = detector.score(test.images[:1]).table[PADIM_COLUMN].iloc[0]
    assert alone == pytest.approx(scores[0], rel=1e-4)


def _long(value: int) -> bytes:
    """LONG1: any integer, as pickle writes a large one."""
    raw = value.to_bytes((value.bit_length() + 8) // 8 or 1, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _crafted(tmp_path, offset=_int(1), shape=_int(2) + _int(3), strides=_int(1) + _int(2), elements=_int(7),
             after_tensor=b"", count=7):
    """A legacy file of one tensor whose every part a test may forge (the layout of the strided test above)."""
    storage = (b"(" + _unicode("storage") + b"ctorch\nFloatStorage\n" + _unicode("k0") + _unicode("cpu") + elements
               + b"Nt" + b"Q")
    tensor = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + offset + shape + b"\x86" + strides + b"\x86"
              + b"\x89" + b"}" + b"tR" + after_tensor)
    payload = b"\x80\x02}" + _unicode("w") + tensor + b"s."
    path = tmp_path / "crafted.pth"
    path.write_bytes(_legacy_file(payload, ["k0"], struct.pack("<q", count) + np.arange(count, dtype="<f4").tobytes()))
    return path


def test_a_crafted_weights_file_cannot_rewrite_a_checked_tensor_with_build(tmp_path):
    """BUILD once set a checked view's offset and strides after the checks: reads out of bounds, a segfault."""
    rewrite = b"}" + _unicode("offset") + _long(10**12) + _unicode("strides") + b"(" + _long(-(10**9)) + _int(1) + \
        b"tb"
    with pytest.raises(UnsafeWeightsFile, match="BUILD"):
        read_legacy_state_dict(_crafted(tmp_path, after_tensor=rewrite))


@pytest.mark.parametrize("forged", [
    {"strides": _int(-1) + _int(2)},                                # a negative stride
    {"offset": _int(100)},                                           # an offset past the storage
    {"offset": _int(-3)},                                            # a negative offset
    {"shape": _long(1 << 40) + _long(1 << 40), "strides": _int(0) + _int(0)},   # 2**80 elements on 7
    {"shape": _int(1 << 20) + _int(1 << 10), "strides": _int(0) + _int(0)},      # 1 GiB asked of a small file
    {"elements": _long(10**9), "count": 7},                          # a storage larger than the file
])
def test_every_forged_view_is_refused_in_the_modules_own_words(tmp_path, forged):
    with pytest.raises((DamagedWeightsFile, UnsafeWeightsFile)):
        read_legacy_state_dict(_crafted(tmp_path, **forged))
