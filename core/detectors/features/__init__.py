"""Pretrained feature extractors for the detectors, with their weights read from disk only (never downloaded)."""

import os
from pathlib import Path


def keras_models_folder() -> Path:
    """Where Keras keeps weights files: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


class BackboneUnavailable(RuntimeError):
    """The requested ImageNet weights are not on this machine (or not readable); the message says what to do."""
