"""Defaults shared by the command line, the dashboard and the networks (importing this loads no Keras)."""

MODEL_KINDS = ("ncae", "cae")
DEFAULT_INPUT_SIZE = 64
DEFAULT_WIDTHS = (16, 48, 64)
DEFAULT_BOTTLENECK = 8
DEFAULT_EPOCHS = 60
