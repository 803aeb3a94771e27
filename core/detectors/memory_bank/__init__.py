"""The PatchCore-style memory bank: each patch's distance to the nearest good patch.

The detector is in ``detector.py``, its TensorFlow graph for the exported inspector in ``inspector.py``;
importing this package loads neither."""
