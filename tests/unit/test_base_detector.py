"""Every detector is a scikit-learn-style estimator through one base class: parameters by name, ``clone``,
``score_samples`` / ``decision_function``, and the fitted state every caller reads declared in one place."""

import numpy as np
import pytest
from sklearn.base import clone

from core.detectors import DETECTOR_NAMES, new_detector
from core.detectors.base import BaseDetector

from tests.conftest import TINY_MODEL


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_every_detector_clones_with_its_parameters_and_takes_them_by_name(name):
    from core.detectors import primary_score_of, score_columns_of

    detector = new_detector(name, seed=7)
    assert isinstance(detector, BaseDetector)
    # what the registry says without importing the detector is what the detector is
    assert detector.primary_score == primary_score_of(name) and tuple(detector.score_columns) == score_columns_of(name)
    twin = clone(detector)
    assert type(twin) is type(detector) and twin is not detector
    assert twin.get_params(deep=False) == detector.get_params(deep=False)
    assert twin.get_params()["seed"] == 7
    assert set(detector.get_params(deep=False)) == set(type(detector).parameter_names())
    twin.set_params(seed=11)
    assert twin.seed == 11 and detector.seed == 7
    with pytest.raises(ValueError, match="has no parameter 'backbone_name'"):
        twin.set_params(backbone_name="x")
    assert not twin.is_fitted()
    with pytest.raises(RuntimeError, match="not fitted yet"):
        twin.score(np.zeros((1, int(twin.input_size), int(twin.input_size)), np.float32))


def test_a_memory_bank_on_an_autoencoder_clones_the_autoencoder_as_a_parameter():
    autoencoder = new_detector("ncae", **TINY_MODEL)
    bank = new_detector("memory_bank", autoencoder=autoencoder, backbone="encoder")
    params = bank.get_params()
    assert params["autoencoder"] is autoencoder and params["autoencoder__input_size"] == 32
    assert "autoencoder" not in bank.run_parameters()   # a run saves the autoencoder as files of its own
    twin = clone(bank)
    assert twin.autoencoder is not autoencoder and twin.autoencoder.get_params() == autoencoder.get_params()
    bank.set_params(autoencoder__seed=5)
    assert autoencoder.seed == 5


def test_score_samples_is_the_primary_score_and_decision_function_is_its_distance_to_the_threshold():
    rng = np.random.default_rng(0)
    images = rng.uniform(0.3, 0.7, (20, 32, 32)).astype(np.float32)
    detector = new_detector("ncae", **(TINY_MODEL | {"epochs": 2})).fit(images)
    assert detector.is_fitted()
    probe = np.concatenate([images[:3], np.clip(images[3:5] + rng.uniform(-0.6, 0.6, (2, 32, 32)), 0, 1)])
    scores = detector.score_samples(probe)
    assert scores.shape == (5,) and np.allclose(scores, detector.score(probe).table["map_max"])
    margins = detector.decision_function(probe)
    verdicts = detector.default_decision_.verdicts(scores)
    assert [verdict == "NG" for verdict in verdicts] == [margin >= 0 for margin in margins]
    assert "NG" in set(verdicts)


def test_an_unfitted_detector_declares_its_fitted_state_as_absent():
    detector = new_detector("padim")
    assert detector.default_decision_ is None and detector.frame_limits_ is None and detector.history_ is None
    assert detector.n_held_out_images_ == 0


def test_every_detector_folder_holds_its_detector_and_its_inspector_graph_and_is_in_the_registry():
    """One detector, one folder: its maths, its graph for the export and what the registry knows of it."""
    import importlib
    from pathlib import Path

    from core.detectors import detector_class, entry

    folders = sorted(path for path in (Path(__file__).resolve().parents[2] / "core" / "detectors").iterdir()
                     if path.is_dir() and (path / "detector.py").is_file())
    assert {folder.name for folder in folders} == {"autoencoder", "memory_bank", "padim", "lattice", "draem", "feature_autoencoder"}
    registered = set()
    for folder in folders:
        assert (folder / "inspector.py").is_file(), folder.name
        entries = importlib.import_module(f"core.detectors.{folder.name}").ENTRIES
        for name, found in entries.items():
            assert entry(name) is found and found.module == f"core.detectors.{folder.name}.detector"
            assert detector_class(name)().inspector_judge.__func__ is not BaseDetector.inspector_judge, name
            registered.add(name)
    assert registered == set(DETECTOR_NAMES)
