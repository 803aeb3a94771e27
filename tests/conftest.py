import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from core.quiet import import_tensorflow_quietly

import_tensorflow_quietly()

from core.data.datasets import open_dataset  # noqa: E402
from core.detectors.autoencoder.detector import ResidualDetector  # noqa: E402
from core.runs.pipeline import train_run  # noqa: E402
from core.data.synthetic import DemoSetSize, generate_demo_set  # noqa: E402

SMALL_SET = DemoSetSize(train_good=24, test_good=6, test_defect_per_type=2)
TINY_MODEL = dict(input_size=32, widths=(8, 16), bottleneck=4, epochs=3, batch_size=8, seed=0)


@pytest.fixture(scope="session")
def small_demo_dir(tmp_path_factory):
    """A small demo set in the MVTec layout, written by the project's own generator."""
    return generate_demo_set(tmp_path_factory.mktemp("data") / "demo", SMALL_SET, size=64, seed=3)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, small_demo_dir):
    """A real (tiny) NCAE trained on the small demo set and saved as a run."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    with open_dataset(small_demo_dir) as dataset:
        train_run(dataset, run_dir, ResidualDetector(model="ncae", **TINY_MODEL))
    return run_dir


@pytest.fixture(scope="session", autouse=True)
def keras_home(tmp_path_factory):
    """Converted ImageNet weights go to one test folder for the whole run (converted once), never to the user's
    Keras cache; subprocesses inherit it. A test that needs an empty cache makes its own (test_backbones)."""
    yield from keras_home_at(tmp_path_factory.mktemp("keras_home"))


def keras_home_at(folder):
    before = os.environ.get("KERAS_HOME")
    os.environ["KERAS_HOME"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("KERAS_HOME", None)
    else:
        os.environ["KERAS_HOME"] = before


# Test modules that take the most worker-seconds, heaviest first (measured per module from a run's timeline of
# `make test`). `make test` hands whole modules to its processes in collection order (`--no-loadscope-reorder`:
# pytest-xdist would otherwise hand out the modules with the most tests first, whatever they cost): the heavy ones
# start first and the light ones fill in around them, so no long module is left to run alone at the end.
HEAVIEST_MODULES = (
    "tests/e2e/test_browser_trust.py",
    "tests/unit/test_export.py",
    "tests/unit/test_native_resolution.py",
    "tests/e2e/test_browser.py",
    "tests/unit/test_compare.py",
    "tests/app/test_pages_per_detector.py",
    "tests/unit/test_every_detector_is_a_run.py",
    "tests/unit/test_dask_scoring.py",
    "tests/unit/test_jobs.py",
    "tests/app/test_pages.py",
    "tests/unit/test_cli.py",
    "tests/unit/test_detector_and_runs.py",
    "tests/unit/test_hardening.py",
    "tests/unit/test_backbones.py",
    "tests/unit/test_demo_acceptance.py",
    "tests/unit/test_feature_autoencoder.py",
    "tests/unit/test_detector_check.py",
    "tests/app/test_page_consistency.py",
    "tests/unit/test_memory_bank.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {module: place for place, module in enumerate(HEAVIEST_MODULES)}
    # a stable sort: the tests of one module keep their order
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
