"""PaDiM: per-position Gaussians over ImageNet patch features.

The detector is in ``detector.py``, its TensorFlow graph for the exported inspector in ``inspector.py``;
importing this package loads neither."""
