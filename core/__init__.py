"""Residual Lab engine: NCAE anomaly detection on images of manufactured parts.

No Streamlit here: the dashboard, the command line and notebooks all use this package the same way::

    from core.data.datasets import open_dataset
    from core.detectors.autoencoder.detector import ResidualDetector

    with open_dataset("demo") as dataset:
        good = dataset.load(dataset.train_good, 64).images        # (n, 64, 64) floats in [0, 1]
        detector = ResidualDetector(model="ncae").fit(good)
        table = detector.score(dataset.load(dataset.test, 64).images).table   # higher = more anomalous

The package is built in floors; a module imports only from its own floor and those below
(``tests/unit/test_layers.py`` checks every import, inside functions too):

1. foundation: ``decision`` (the accept/reject rule), ``errors``, ``files`` (atomic writes, locks),
   ``defaults``, ``quiet``;
2. ``data``: reading images and data sets, the frame check, generated sets;
3. ``detectors``: every detector, its maths and how it saves its files;
4. ``evaluation``: scoring images into rows, metrics, thresholds, comparisons;
5. ``runs``: run folders, manifests, training jobs, the export, Dask scoring;
6. ``cli`` (``python -m core``).

The contracts other tools rely on (data layouts, the command line and its exit codes, scores.csv,
threshold files, run manifests, the inspector) are written down in ``docs/contracts.md``.
"""

__version__ = "0.1.0"
