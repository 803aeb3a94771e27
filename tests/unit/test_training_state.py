"""A training's optimiser and loss trackers are built before Keras traces its step, so the step is traced once
(a traced step that creates variables is traced again: a third of a small network's training) and the weights
trained are the same to the bit."""

import numpy as np
import pytest

from core.detectors.autoencoder import detector as autoencoder
from core.detectors.draem import detector as draem

from tests.conftest import TINY_MODEL
from tests.unit.test_every_detector_is_a_run import TINY_DRAEM

IMAGES = np.random.default_rng(0).uniform(size=(30, 32, 32)).astype(np.float32)


def _weights_and_step_traces(monkeypatch, module, detector, prebuilt: bool):
    from tensorflow.python.eager.polymorphic_function import tracing_compilation

    traced = []
    trace = tracing_compilation.trace_function

    def counted(*arguments, **keywords):
        options = keywords.get("tracing_options") or arguments[2]
        traced.append(getattr(options.python_function, "__name__", ""))
        return trace(*arguments, **keywords)

    with monkeypatch.context() as patch:
        patch.setattr(tracing_compilation, "trace_function", counted)
        if not prebuilt:
            patch.setattr(module, "build_training_state", lambda network, batch: None)
        detector.fit(IMAGES)
    weights = np.concatenate([value.ravel() for value in detector.model_.get_weights()])
    return weights, traced.count("one_step_on_data")


@pytest.mark.parametrize("make", [
    lambda: (autoencoder, autoencoder.ResidualDetector(**TINY_MODEL)),
    lambda: (autoencoder, autoencoder.ResidualDetector(**(TINY_MODEL | {"patch_size": 16, "patches_per_epoch": 32}))),
    lambda: (draem, draem.DraemDetector(**TINY_DRAEM)),
], ids=["whole images", "patches", "draem"])
def test_the_training_step_is_traced_once_and_trains_the_same_weights(make, monkeypatch):
    module, detector = make()
    before, traced_before = _weights_and_step_traces(monkeypatch, module, detector, prebuilt=False)
    module, detector = make()
    after, traced_after = _weights_and_step_traces(monkeypatch, module, detector, prebuilt=True)
    np.testing.assert_array_equal(after, before)
    assert traced_after == traced_before - 1, (traced_before, traced_after)
