"""Pieces more than one detector uses, each written once: residual statistics, patch features, the coreset,
border calibration and the TensorFlow helpers the exported graphs share."""
