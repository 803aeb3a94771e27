"""Defaults shared by the command line, the dashboard and the networks (importing this loads no Keras).

How the defaults were chosen — ``python -m benchmarks.autoencoder_sweep``, recorded in
``benchmarks/recorded/autoencoder_sweep.json``. One factor was changed at a time around a
baseline: input 64 px, widths 16/48/64, bottleneck 8, MSE, no denoising. Each setting trained one
NCAE (seed 0) on each of the three generated sets: casting (the demo), texture and object.
Figures are image AUROC of the ``max`` column unless another column is named.

- **Depth: four stride-2 stages (16/32/48/64) instead of three.** This is the clearest win.
  Casting: ``max`` 0.996 against 0.985; ``kurtosis`` and ``stat_distance`` 0.999–1.000; pixel
  AUROC 0.999 against 0.997. Texture: 0.788 against 0.781. Object: the best pixel maps
  (AUROC 0.991, AUPRO 0.971 against 0.976 / 0.924) and ``map_max`` 0.781 against 0.723. A 4×4
  code makes the network describe the part instead of copying it, and it trains no slower.
- **Bottleneck: 8 channels.** With 4 the reconstruction blurs everything (casting 0.949). With 16
  more of each defect is copied (casting 0.976).
- **Widths: kept narrow.** 32/64/96 costs 1.8× the training time. Casting gains 0.002, object
  loses 0.10.
- **Loss: MSE.** SSIM trains 2–5× slower and is worse on casting (0.973) and texture (0.742).
  It is the best autoencoder for the object set (``map_max`` 0.889), so it stays an option
  (``--loss ssim``) for structural defects such as missing or extra parts.
- **Denoising: off.** σ = 0.05 moves AUROC by at most ±0.003 on casting and texture.
- **Input size: 64 px.** At 96 px, texture improves (0.820 against 0.781), because the fine weave
  is close to the pixel pitch at 64 px. Casting falls to 0.966, and training takes 2.1× as long.
  For fine periodic textures, train at a larger ``--image-size``. (This is the Python class's
  default and the whole-image recipe. The command line and Data & Model now start from the images'
  native size, at most 512 px, and train on 64 px patches above 64 px: see
  :mod:`core.data.native` and ``benchmarks/recorded/native_resolution.json``.)
- **Memory bank coreset: 5 % of the good patches.** Against 1 %, it wins in 5 of 8 settings on
  casting and in all 8 on object (on the default network: 0.985 against 0.967). It loses
  slightly on texture. Building the bank takes about 4× as long, about 20 s on the demo.
- **No autoencoder setting rescues texture.** No setting passes 0.84, at image or pixel level.
  The comparison in the README shows which detector does better there.
"""

MIN_TRAINING_IMAGES = 8
DEFAULT_INPUT_SIZE = 64
DEFAULT_WIDTHS = (16, 32, 48, 64)
DEFAULT_BOTTLENECK = 8
DEFAULT_EPOCHS = 60
DEFAULT_LOSS = "mse"
DEFAULT_NOISE_STD = 0.0
DEFAULT_MAP_SIGMA = 1.0
DEFAULT_CORESET_RATIO = 0.05
# the ImageNet backbone's own resolution: memory bank and PaDiM work at it
IMAGENET_INPUT_SIZE = 224

# Training on patches (``--patch-size``): crops drawn per epoch. 2048 crops of 64 px are as many
# pixels as 128 whole 128 px images, about what an epoch of the demo cost at 64 px whole-image
# training, times four.
DEFAULT_PATCHES_PER_EPOCH = 2048
# Whole-image scoring of a patch-trained network runs this many pixels per batch (8 images at
# 512 px): activations stay near 150 MB per layer, and the batches are large enough to keep both
# cores busy.
SCORING_PIXELS_PER_BATCH = 8 * 512 * 512
DEFAULT_PATCH_SIZE = 64
NETWORK_STRIDE = 16  # 2 ** len(DEFAULT_WIDTHS): patch sides must be multiples of it
# Training speed of the default network on the 2-core machine, pixels of training input per second
# (forward, backward and the held-out loss), measured by ``python -m benchmarks.native_resolution``
# (benchmarks/recorded/native_resolution.json); the training-time estimates shown before training use it.
TRAINING_PIXELS_PER_SECOND = 3.5e6
