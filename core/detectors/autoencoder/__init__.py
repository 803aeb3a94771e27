"""The NCAE and its baseline CAE: reconstruct the image, and judge it by the statistics of the residual.

The detector is in ``detector.py``, its TensorFlow graph for the exported inspector in ``inspector.py``;
importing this package loads neither."""
