"""What every Keras training of the detectors shares."""

from __future__ import annotations


def build_training_state(network, batch) -> None:
    """Create the optimiser's and the loss trackers' variables of a compiled ``network`` before ``fit``.

    Without a distribution strategy, Keras 3 creates them inside the first trace of its training step, and a
    ``tf.function`` that creates variables when first traced is traced a second time: 0.3-0.6 s of every
    training, a third of a small network's ``fit``. Created here, from the shapes of ``batch`` (inputs and
    targets, as ``fit`` is given them), the step is traced once, and the training is the same to the bit (the
    test compares the weights). ``_symbolic_build`` is Keras's own step for this, not public: where a version
    lacks it, ``fit`` creates the variables as before."""
    build = getattr(network, "_symbolic_build", None)
    if build is not None:
        build(data_batch=batch)
