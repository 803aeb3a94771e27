import math

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from core.runs.bundles import load_bundle
from core.data.datasets import open_dataset
from core.detectors.common.bank_search import CellSearch, exact_largest
from core.detectors.common.coreset import greedy_coreset, greedy_coreset_of_size
from core.detectors.common.patch_features import imagenet_weights_path, upsample_maps
from core.detectors.features import BackboneUnavailable
from core.detectors.memory_bank.detector import MemoryBankDetector, reweighted_image_scores


def test_coreset_adds_the_point_farthest_from_those_already_chosen():
    points = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    # from 0: 11 is farthest; then 2 (distance 2 to {0, 11}) beats 1 and 10 (distance 1)
    assert greedy_coreset(points, 0.6, start=0).tolist() == [0, 4, 2]
    assert greedy_coreset(points, 0.4, start=3).tolist() == [3, 0]
    assert greedy_coreset(points, 1.0).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="ratio"):
        greedy_coreset(points, 0.0)


def test_coreset_keeps_the_requested_share_and_covers_every_cluster():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 50, (6, 200))
    points = np.concatenate([centre + rng.normal(0, 0.5, (300, 200)) for centre in centres])
    chosen = greedy_coreset(points, 0.01, projection_dim=32)
    assert len(chosen) == math.ceil(0.01 * len(points)) == len(set(chosen.tolist()))
    clusters = {int(index) // 300 for index in chosen}
    assert clusters == set(range(6))  # an ordinary random 1 % sample of 18 could miss a cluster


def _plain_k_center(points: np.ndarray, target: int, first: int) -> list[int]:
    """The textbook greedy loop, every row's distance updated every step: what the pruned loop must equal."""
    nearest = np.full(len(points), np.inf)
    chosen = [first]
    while True:
        nearest = np.minimum(nearest, ((points - points[chosen[-1]]) ** 2).sum(axis=1))
        if len(chosen) == target:
            return chosen
        chosen.append(int(np.argmax(nearest)))


@pytest.mark.parametrize("spread", ["clustered", "uniform"])
def test_pruned_coreset_chooses_exactly_what_the_textbook_loop_chooses(spread):
    # clustered rows let whole clusters be skipped; uniform 24-d rows force the full-pass fallback
    rng = np.random.default_rng(3)
    if spread == "clustered":
        points = np.concatenate([centre + rng.normal(0, 1, (400, 8)) for centre in rng.normal(0, 5, (12, 8))])
    else:
        points = rng.uniform(0, 1, (3000, 24))
    points = points.astype(np.float32)
    chosen = greedy_coreset(points, 0.1, start=7)
    assert chosen.tolist() == _plain_k_center(points.astype(np.float64), len(chosen), 7)


def test_bank_keeps_exactly_the_capped_number_of_patches(monkeypatch):
    import core.detectors.memory_bank.detector as memory_bank

    monkeypatch.setattr(memory_bank, "MAX_BANK_CANDIDATES", 3000)
    monkeypatch.setattr(memory_bank, "MAX_BANK_SIZE", 3)       # 3 / 3000 * 3000 rounds up to 4 as a ratio
    patches = np.random.default_rng(0).normal(size=(5000, 8)).astype(np.float32)
    candidates, target = memory_bank.bank_candidates(patches, 0.5, seed=0)
    assert candidates.shape == (3000, 8) and target == 3
    assert len(greedy_coreset_of_size(candidates, target)) == 3


@pytest.mark.parametrize("count", [40, 3000])   # the clustered loop, and the full-pass fallback
def test_coreset_never_picks_a_point_twice_among_near_duplicates(count):
    rng = np.random.default_rng(0)
    base = rng.normal(0, 100, (1, 16))
    points = (base + rng.normal(0, 1e-5, (count, 16))).astype(np.float32)  # round-off beats their spacing
    chosen = greedy_coreset(points, 0.5, start=0)
    assert len(set(chosen.tolist())) == len(chosen) == count // 2


def test_image_score_is_the_worst_patch_distance_with_the_papers_reweighting():
    bank = np.array([[0.0, 0.0], [10.0, 0.0]], np.float32)
    search = CellSearch(bank)
    patches = np.array([[0.0, 1.0], [7.0, 0.0]], np.float32)          # one image, two patches
    distances, nearest = search.exact_nearest(patches)
    assert distances.tolist() == pytest.approx([1.0, 3.0]) and nearest.tolist() == [0, 1]
    worst, worst_features = distances[1:], patches[1:]
    # worst patch (7, 0) -> m* = (10, 0); its 2 neighbours in the bank are itself (d=3) and (0, 0) (d=7)
    support = search.exact_neighbours(bank[nearest[1:]], 2)
    assert support.tolist() == [[1, 0]]
    assert reweighted_image_scores(worst, worst_features, support[:, :1], bank).tolist() == pytest.approx([3.0])
    weighted = reweighted_image_scores(worst, worst_features, support, bank)
    assert weighted.tolist() == pytest.approx([(1 - math.exp(3) / (math.exp(3) + math.exp(7))) * 3.0])


def test_the_encoder_banks_image_scores_are_the_whole_banks(fitted_bank):
    """The encoder's bank is searched by cells too; its re-weighted image scores are what scikit-learn's exact
    search of the whole bank gives (the worst patch, its nearest entry and that entry's neighbours)."""
    detector, good = fitted_bank
    images = good[:6]
    features = detector.extractor_(images)
    count, height, width, dim = features.shape
    exact = NearestNeighbors(n_neighbors=1).fit(detector.memory_bank_)
    distances, nearest = exact.kneighbors(features.reshape(-1, dim))
    distances, nearest = distances[:, 0].reshape(count, -1), nearest[:, 0].reshape(count, -1)
    worst = np.argmax(distances, axis=1)
    rows = np.arange(count)
    _, support = exact.kneighbors(detector.memory_bank_[nearest[rows, worst]], n_neighbors=detector.neighbours)
    support[:, 0] = nearest[rows, worst]
    expected = reweighted_image_scores(distances[rows, worst], features.reshape(count, height * width, dim)[rows, worst],
                                       support, detector.memory_bank_)
    np.testing.assert_allclose(detector.score(images).table["patch_score"], expected, rtol=1e-6)


def test_upsampled_maps_keep_the_hot_patch_where_it_was():
    grid = np.zeros((1, 4, 4), dtype=np.float32)
    grid[0, 1, 2] = 1.0
    full = upsample_maps(grid, 16)
    assert full.shape == (1, 16, 16)
    row, column = np.unravel_index(np.argmax(full[0]), (16, 16))
    assert 4 <= row < 8 and 8 <= column < 12


@pytest.fixture(scope="module")
def fitted_bank(tiny_run, small_demo_dir):
    autoencoder = load_bundle(tiny_run)
    with open_dataset(small_demo_dir) as dataset:
        good = dataset.load(dataset.train_good, autoencoder.input_size).images
    return MemoryBankDetector(autoencoder, coreset_ratio=0.25).fit(good), good


def test_memory_bank_flags_a_pasted_patch_and_maps_it_where_it_is(fitted_bank):
    detector, good = fitted_bank
    assert len(detector.memory_bank_) == math.ceil(0.25 * detector.n_good_patches_)
    damaged = good[:4].copy()
    damaged[:, 4:12, 18:26] = 1.0
    result = detector.score(np.concatenate([good[:4], damaged]), with_maps=True)
    scores = result.table["patch_score"].to_numpy()
    assert (scores[4:] > scores[:4]).all()
    assert result.anomaly_maps.shape == (8, 32, 32)
    for heat in result.anomaly_maps[4:]:
        row, column = np.unravel_index(np.argmax(heat), heat.shape)
        assert 0 <= row < 16 and 14 <= column < 30


def test_memory_bank_refuses_a_ratio_outside_one_to_twenty_five_percent(fitted_bank):
    detector, good = fitted_bank
    with pytest.raises(ValueError, match="coreset_ratio"):
        MemoryBankDetector(detector.autoencoder, coreset_ratio=0.5).fit(good)


def test_imagenet_backbone_without_weights_on_disk_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(BackboneUnavailable, match="copy resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        imagenet_weights_path("resnet50")
    with pytest.raises(BackboneUnavailable, match="not on this machine"):
        MemoryBankDetector(backbone="mobilenet_v2").fit(np.zeros((2, 224, 224), np.float32))


def test_imagenet_backbone_loads_weights_from_disk(tmp_path, monkeypatch):
    import keras
    from keras.src.legacy.saving import legacy_h5_format
    import h5py

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    # stand-in weights in the same legacy-HDF5 format as the published file, so no download is needed
    network = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(224, 224, 3))
    with h5py.File(tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
                   "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, network)
    rng = np.random.default_rng(0)
    good = rng.uniform(0.4, 0.6, (6, 224, 224)).astype(np.float32)
    detector = MemoryBankDetector(backbone="mobilenet_v2", coreset_ratio=0.05).fit(good)
    assert detector.grid_shape_ == (28, 28)
    damaged = good[:1].copy()
    damaged[0, 100:140, 100:140] = 1.0
    scores = detector.score(np.concatenate([good[:1], damaged]))
    assert scores.table["patch_score"][1] > scores.table["patch_score"][0]


def test_the_cell_search_gives_true_distances_never_below_the_whole_banks_and_mostly_equal():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (40, 16))
    bank = (centres[rng.integers(40, size=4000)] + rng.normal(size=(4000, 16))).astype(np.float32)
    queries = (centres[rng.integers(40, size=3000)] + rng.normal(size=(3000, 16))).astype(np.float32)
    search = CellSearch(bank)
    assert not search.exhaustive   # 4,000 entries: 25 cells, 4 probed
    distances, indices = search.kneighbors(queries)
    exact = NearestNeighbors(n_neighbors=1).fit(bank).kneighbors(queries)[0][:, 0]
    assert np.allclose(distances[:, 0], np.linalg.norm(queries - bank[indices[:, 0]], axis=1), atol=1e-5)
    assert (distances[:, 0] >= exact - 1e-5).all()
    assert np.mean(np.isclose(distances[:, 0], exact, atol=1e-5)) > 0.9
    assert np.allclose(search.exact_distances(queries), exact, atol=1e-5)
    assert np.allclose(CellSearch(bank, probed_cells=None).kneighbors(queries)[0][:, 0], exact, atol=1e-5)
    # the same bank gives the same cells: a saved run searches as it did when fitted
    assert np.array_equal(CellSearch(bank).kneighbors(queries)[1], indices)


def test_an_image_score_is_the_whole_banks_where_the_cells_overshot_its_worst_patch():
    approximate = np.array([[5.0, 4.0, 1.0] + [0.0] * 20, [2.0, 3.0, 0.5] + [0.0] * 20])
    exact = approximate.copy()
    exact[0, 0] = 3.5                      # the first image's highest patch was found in the wrong cells
    asked = []

    def exact_scores(image, patches):
        asked.append(len(patches))
        return exact[image, patches]

    largest, where = exact_largest(approximate, exact_scores)
    assert largest.tolist() == [4.0, 3.0] and where.tolist() == [1, 1]
    assert sum(asked) <= 16                # a few patches checked, not every one
