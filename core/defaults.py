"""Defaults shared by the command line, the dashboard and the networks (importing this loads no Keras)."""

MODEL_KINDS = ("ncae", "cae")
DEFAULT_INPUT_SIZE = 64
DEFAULT_WIDTHS = (16, 48, 64)
DEFAULT_BOTTLENECK = 8
DEFAULT_EPOCHS = 60
DEFAULT_LOSS = "mse"
DEFAULT_NOISE_STD = 0.0
DEFAULT_MAP_SIGMA = 1.0
DEFAULT_CORESET_RATIO = 0.01
