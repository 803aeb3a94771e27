"""Residual Lab engine: NCAE anomaly detection on images of manufactured parts.

No Streamlit here: the dashboard, the command line and notebooks all use this package the same way::

    from core.data.datasets import open_dataset
    from core.detectors.autoencoder import ResidualDetector

    dataset = open_dataset("demo")
    detector = ResidualDetector(model="ncae").fit(dataset.load_train_good(128))
    table = detector.score(images).table        # one row per image, higher = more anomalous
"""

__version__ = "0.1.0"
