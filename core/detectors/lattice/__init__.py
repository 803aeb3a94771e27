"""The lattice detector: each image compared with itself shifted by its weave's period.

The detector is in ``detector.py``, its TensorFlow graph for the exported inspector in ``inspector.py``;
importing this package loads neither."""
