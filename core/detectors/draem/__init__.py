"""DRAEM-style: an NCAE plus a judge network trained on synthetic defects.

The detector is in ``detector.py``, its TensorFlow graph for the exported inspector in ``inspector.py``;
importing this package loads neither."""
