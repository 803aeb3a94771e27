"""Export a run as a self-contained inspector: a TensorFlow SavedModel that turns raw pixels into a verdict.

The SavedModel's ``serving_default`` signature takes ``images``: a uint8 tensor ``(n, height, width,
channels)`` of one size per call, any size, grey (1 channel) or RGB (3). Everything the program does
between the file and the verdict is inside the graph, so a production line gets the same decision
on the same pixels without this package:

1. grey conversion as Pillow does it (ITU-R 601-2 luma, in its fixed-point arithmetic);
2. the fit to the working resolution as :func:`core.data.images.decode_frame` does it: the long side
   resized with Pillow's bilinear filter (its support widened by the scale when shrinking, its
   fixed-point coefficients and the rounding to 8 bits after each pass, rows first), the short
   side padded with its edge pixels;
3. the frame check (:mod:`core.data.frame_check`) with the run's limits;
4. the detector and its primary score, with its map:
   - NCAE / CAE: the network, the residual and ``map_max`` (the maximum of the residual map smoothed by
     a Gaussian, as ``scipy.ndimage.gaussian_filter`` with ``mode="nearest"``);
   - DRAEM: the reconstruction and judge networks; ``draem_score``, the maximum of the smoothed defect
     probability;
   - PaDiM: EfficientNet-Lite0's patch features (scaled, 3×3-averaged, on one grid) and each patch's
     Mahalanobis distance to its position's Gaussian; ``padim_score``, the largest;
   - memory bank (on the packaged EfficientNet-Lite0): each patch's distance to its nearest bank entry,
     in float64 as the fitted search computes it, rescaled by its border ring; ``patch_score``, the
     largest. A bank on another backbone, or built before border calibration, is refused in one sentence;
   - lattice: the whole of :mod:`core.detectors.lattice` in float64 (its DFT and Gaussian blurs as matrix
     products, which ONNX Runtime runs in float64), the surface checks and the border rescaling;
5. the decision: ``NG`` when ``score >= threshold``, ``REVIEW`` in the review band, ``OK`` below,
   ``INVALID`` when the frame check refuses the frame.

It returns ``score``, ``verdict`` and ``anomaly_map``. ``manifest.json`` beside it says what it is,
from which run, the decision and the SHA-256 of every file.

The same graph is also written as ``inspector.onnx`` (tf2onnx, opset 17), for lines that run
ONNX Runtime rather than TensorFlow. It is kept only when ONNX Runtime, on probe frames of several
sizes, gives the SavedModel's verdicts and its scores to :data:`ONNX_TOLERANCE`; the manifest says
whether it was written, and why not when it was not.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from core.errors import InputError
from core.files import STORAGE_ERRORS, storage_error_in

EXPORT_FORMAT = "residual-lab-inspector/1"
PRECISION_BITS = 32 - 8 - 2     # Pillow's fixed-point precision for 8-bit resampling
TRUNCATE = 4.0                  # scipy.ndimage.gaussian_filter's default
ONNX_OPSET = 17
ONNX_TOLERANCE = 1e-5           # largest score difference from the SavedModel an ONNX file may show, relative to
                                # the score (at least 1): float32 round-off in another runtime's kernels


def export_inspector(run_dir: Path, out: Path, threshold_document: dict | None = None) -> Path:
    """Write the inspector for the run in ``run_dir`` into the new folder ``out``; ``InputError`` when it cannot."""
    import tensorflow as tf

    from core.files import atomic_write_json
    from core.detectors.saving import sha256_of
    from core.runs.bundles import load_bundle, read_manifest
    from core.evaluation.scoring import frame_limits_of

    manifest = read_manifest(run_dir)
    detector = load_bundle(run_dir)
    why_not = _cannot_export(manifest, detector)
    if why_not:
        raise InputError(f"{run_dir}: {why_not}")
    decision = detector.default_decision_
    if threshold_document is not None:
        from core.decision import Decision

        band = threshold_document.get("review_band") or {}
        decision = Decision(threshold_document["score_column"], float(threshold_document["threshold"]),
                            band.get("review_from"), "the threshold file")
    if decision is None:
        raise InputError(f"{run_dir}: the run has no default decision; give --threshold-file.")
    if decision.column != detector.primary_score:
        raise InputError(f"the inspector computes the run's primary score {detector.primary_score!r}; the decision "
                         f"is on {decision.column!r}.")
    limits = frame_limits_of(detector)
    module = _Inspector(detector, decision, limits)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not an empty folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        model_dir = scratch / "saved_model"
        tf.saved_model.save(module, str(model_dir), signatures={"serving_default": module.inspect})
        onnx = _write_onnx(tf, module, model_dir, scratch / "inspector.onnx")
        files = {path.relative_to(scratch).as_posix(): sha256_of(path) for path in sorted(scratch.rglob("*"))
                 if path.is_file()}
        atomic_write_json(scratch / "manifest.json", {
            "format": EXPORT_FORMAT,
            "what": "TensorFlow SavedModel inspector: serving_default(images: uint8 (n, height, width, 1 or 3)) -> "
                    "score, verdict (OK / REVIEW / NG / INVALID), anomaly_map",
            "run": {"path": str(Path(run_dir).resolve()), "model_kind": manifest["model_kind"],
                    "model_sha256": manifest["model_sha256"]},
            "input_size": int(detector.input_size), "channels": int(detector.channels),
            "score": decision.column, "score_sign": "higher = more anomalous; NG when score >= threshold",
            "threshold": decision.threshold, "review_from": decision.review_from, "decision_basis": decision.basis,
            "frame_check": limits.to_json() if limits is not None else None,
            "onnx": onnx,
            "files": files,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        })
        # the scratch folder is made 0700; a serving process under another user must read the inspector, as it
        # reads the runs: folders 0755, files 0644
        for path in [scratch, *scratch.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        if out.exists():
            out.rmdir()
        shutil.move(str(scratch), str(out))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def _cannot_export(manifest: dict, detector) -> str:
    """Why this run cannot become an inspector, in one sentence (``""`` when it can)."""
    from core.detectors.memory_bank import PACKAGED_BACKBONE

    if manifest["model_kind"] == "memory_bank":
        if detector.backbone != PACKAGED_BACKBONE:
            return (f"a memory bank on the {detector.backbone} backbone is not exported; train one on the packaged "
                    f"{PACKAGED_BACKBONE} (the default) to export it.")
        if getattr(detector, "border_calibration_", None) is None:
            return "this memory bank was built before border calibration; train it again to export it."
    return ""


def _write_onnx(tf, module, saved_model: Path, path: Path) -> dict:
    """Convert the inspector to ONNX at ``path`` and check it against the SavedModel's graph on probe frames;
    what happened, for the manifest. The file is removed when the check fails: a wrong ONNX file is worse
    than none."""
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as error:
        return {"written": False, "why": f"tf2onnx or onnxruntime is not installed ({error.name})"}
    try:
        # tf2onnx's own command on the written SavedModel: its Python API does not carry the module's
        # variables into a tf.function's graph, and the command's log stays out of ours
        converted = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model),
                                    "--output", str(path), "--opset", str(ONNX_OPSET)],
                                   capture_output=True, text=True, timeout=600)
        if converted.returncode != 0 or not path.is_file():
            full = storage_error_in(converted.stderr, path)
            if full is not None:
                raise full
            lines = [line for line in converted.stderr.splitlines() if line.strip()]
            raise ValueError(lines[-1] if lines else f"tf2onnx exited with {converted.returncode}")
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        worst = 0.0
        for frame in _probe_frames(module.size, module.channels):
            expected = {name: value.numpy() for name, value in module.inspect(tf.constant(frame)).items()}
            got = dict(zip([output.name for output in session.get_outputs()], session.run(None, {"images": frame})))
            verdicts = [verdict.decode() for verdict in expected["verdict"]]
            if [str(verdict) for verdict in got["verdict"]] != verdicts:
                raise ValueError(f"verdicts differ on a {frame.shape[1]}×{frame.shape[2]} probe frame")
            worst = max(worst, float(np.max(np.abs(got["score"] - expected["score"]) /
                                         np.maximum(1.0, np.abs(expected["score"])))))
        if not worst <= ONNX_TOLERANCE:
            raise ValueError(f"scores differ by up to {worst:.2g} (relative) from the SavedModel's")
    except OSError as error:
        path.unlink(missing_ok=True)
        if error.errno in STORAGE_ERRORS:  # the user's disk, not the conversion: the whole export fails, exit 2
            raise
        return {"written": False, "why": f"the ONNX conversion did not reproduce the SavedModel: {error}"}
    except Exception as error:  # noqa: BLE001 (any converter or runtime failure means: no ONNX file)
        path.unlink(missing_ok=True)
        return {"written": False, "why": f"the ONNX conversion did not reproduce the SavedModel: {error}"}
    return {"written": True, "file": path.name, "opset": ONNX_OPSET, "tf2onnx": tf2onnx.__version__,
            "checked_with": f"onnxruntime {onnxruntime.__version__}", "largest_relative_score_difference": worst}


def _probe_frames(size: int, channels: int) -> list[np.ndarray]:
    """Frames that take every path of the graph: the working size, a larger non-square one (resized and
    padded), grey input to a colour run or colour to a grey one, and a blank frame (refused by the check)."""
    rng = np.random.default_rng(0)
    smooth = lambda h, w, c: np.clip(128 + 40 * np.sin(np.arange(w) / 5)[None, :, None] +  # noqa: E731
                                     rng.normal(0, 12, (2, h, w, c)), 0, 255).astype(np.uint8)
    other = 1 if channels == 3 else 3
    return [smooth(size, size, channels), smooth(size * 2 + 3, size + 7, channels), smooth(size, size + 9, other),
            np.zeros((1, size, size, channels), np.uint8)]


def _pillow_weights(tf, in_size, out_size):
    """Pillow's bilinear resampling of one axis as an ``(out_size, in_size)`` matrix of its fixed-point
    coefficients (``ImagingResample``'s ``precompute_coeffs`` and ``normalize_coeffs_8bpc``)."""
    in_size = tf.cast(in_size, tf.float64)
    scale = in_size / tf.cast(out_size, tf.float64)
    filterscale = tf.maximum(scale, 1.0)
    support = filterscale                                   # the bilinear filter's support is 1
    centre = (tf.range(tf.cast(out_size, tf.float64)) + 0.5) * scale
    xmin = tf.maximum(tf.cast(tf.cast(centre - support + 0.5, tf.int32), tf.float64), 0.0)
    xmax = tf.minimum(tf.cast(tf.cast(centre + support + 0.5, tf.int32), tf.float64), in_size)
    inputs = tf.range(in_size)[None, :]
    inside = tf.logical_and(inputs >= xmin[:, None], inputs < xmax[:, None])
    weights = tf.maximum(1.0 - tf.abs((inputs - centre[:, None] + 0.5) / filterscale), 0.0)
    weights = tf.where(inside, weights, 0.0)
    weights = weights / tf.reduce_sum(weights, axis=1, keepdims=True)
    return tf.floor(0.5 + weights * float(2 ** PRECISION_BITS))   # all weights are >= 0 for bilinear


def _pillow_pass(tf, pixels, weights, axis):
    """One resampling pass over ``axis`` (1: rows, 2: columns) of an ``(n, h, w, c)`` float64 stack of 8-bit
    values, rounded back to 8 bits as Pillow does."""
    if axis == 2:
        summed = tf.einsum("nhwc,ow->nhoc", pixels, weights)
    else:
        summed = tf.einsum("nhwc,oh->nowc", pixels, weights)
    return tf.clip_by_value(tf.floor((summed + float(2 ** (PRECISION_BITS - 1))) / float(2 ** PRECISION_BITS)),
                            0.0, 255.0)


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = int(TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def _inspector_class():
    import tensorflow as tf

    class Inspector(tf.Module):
        """Raw pixels → the run's working image → its frame check, score and map (``judge``) → the verdict."""

        def __init__(self, detector, decision, limits):
            super().__init__()
            self.judge = _judge_for(tf, detector)
            self.networks = list(self.judge.networks)   # tracked here, so the SavedModel holds their weights
            self.size = int(detector.input_size)
            self.channels = int(detector.channels)
            self.threshold = float(decision.threshold)
            self.review_from = float(decision.threshold if decision.review_from is None else decision.review_from)
            self.limits = limits

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8, name="images")])
        def inspect(self, images):
            height, width = tf.shape(images)[1], tf.shape(images)[2]
            pixels = tf.cast(images, tf.float64)
            pixels = tf.cond(tf.shape(pixels)[3] == 1, lambda: pixels, lambda: pixels[..., :3])
            if self.channels == 1:
                pixels = tf.cond(tf.shape(pixels)[3] == 1, lambda: pixels, lambda: self._luma(pixels))
            else:
                pixels = tf.cond(tf.shape(pixels)[3] == 1, lambda: tf.repeat(pixels, 3, axis=3), lambda: pixels)
            fitted = self._fit(pixels, height, width) / 255.0
            image = tf.cast(fitted, tf.float32)
            invalid = self._frame_refused(image, height, width)
            score, anomaly_map = self.judge(image)
            verdict = tf.where(score >= self.threshold, "NG", tf.where(score >= self.review_from, "REVIEW", "OK"))
            verdict = tf.where(tf.logical_or(invalid, tf.logical_not(tf.math.is_finite(score))), "INVALID", verdict)
            return {"score": score, "verdict": verdict, "anomaly_map": anomaly_map}

        def _luma(self, rgb):
            # Pillow's convert("L"): (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16
            weighted = rgb[..., 0:1] * 19595.0 + rgb[..., 1:2] * 38470.0 + rgb[..., 2:3] * 7471.0 + 32768.0
            return tf.floor(weighted / 65536.0)

        def _fit(self, pixels, height, width):
            size = self.size
            long_side = tf.cast(tf.maximum(height, width), tf.float64)
            scale = size / long_side
            # Python's round() (half to even), as decode_frame computes the fitted size
            new_width = tf.clip_by_value(tf.cast(tf.round(tf.cast(width, tf.float64) * scale), tf.int32), 1, size)
            new_height = tf.clip_by_value(tf.cast(tf.round(tf.cast(height, tf.float64) * scale), tf.int32), 1, size)
            same = tf.logical_and(tf.equal(height, size), tf.equal(width, size))

            def resized():
                out = pixels
                out = tf.cond(tf.equal(new_width, width), lambda: out,
                              lambda: _pillow_pass(tf, out, _pillow_weights(tf, width, new_width), axis=2))
                out = tf.cond(tf.equal(new_height, height), lambda: out,
                              lambda: _pillow_pass(tf, out, _pillow_weights(tf, height, new_height), axis=1))
                spare_rows, spare_columns = size - new_height, size - new_width
                top, left = spare_rows // 2, spare_columns // 2
                return _edge_pad(tf, out, top, spare_rows - top, left, spare_columns - left)

            fitted = tf.cond(same, lambda: pixels, resized)
            return tf.ensure_shape(fitted, [None, size, size, self.channels])

        def _frame_refused(self, image, height, width):
            count = tf.shape(image)[0]
            if self.limits is None:
                return tf.zeros([count], tf.bool)
            limits = self.limits
            grey = image[..., 0] if self.channels == 1 else tf.tensordot(image, tf.constant([0.299, 0.587, 0.114]),
                                                                          axes=[[3], [0]])
            flat = tf.reshape(grey, [count, -1])
            brightness = tf.reduce_mean(flat, axis=1)
            contrast = tf.math.reduce_std(flat, axis=1)
            across = tf.reduce_mean(tf.reshape(tf.abs(grey[:, :, 1:] - grey[:, :, :-1]), [count, -1]), axis=1)
            down = tf.reduce_mean(tf.reshape(tf.abs(grey[:, 1:, :] - grey[:, :-1, :]), [count, -1]), axis=1)
            roughness = (across + down) / 2
            clipped = tf.reduce_mean(tf.cast(tf.logical_or(flat <= 0.5 / 255, flat >= 254.5 / 255), tf.float32), axis=1)
            refused = (contrast < limits.contrast[0]) | (clipped > limits.clipped_max) | \
                (roughness > limits.roughness_max) | (brightness < limits.brightness[0]) | \
                (brightness > limits.brightness[1]) | (contrast > limits.contrast[1])
            if limits.pixels is not None:
                area = tf.cast(height * width, tf.float64)
                aspect = tf.cast(width, tf.float64) / tf.cast(height, tf.float64)
                wrong_size = (area < limits.pixels[0]) | (area > limits.pixels[1]) | \
                    (aspect < limits.aspect[0]) | (aspect > limits.aspect[1])
                refused = refused | tf.fill([count], wrong_size)
            return refused

    return Inspector


def _judge_for(tf, detector):
    """The part of the graph that is the detector's own: working image ``(n, s, s, c)`` → (score, map)."""
    kind = detector.kind   # the autoencoders share one class; the others have their own
    if kind == "draem":
        return _DraemJudge(tf, detector)
    if kind == "padim":
        return _PadimJudge(tf, detector)
    if kind == "memory_bank":
        return _MemoryBankJudge(tf, detector)
    if kind == "lattice":
        return _LatticeJudge(tf, detector)
    return _ResidualJudge(tf, detector)


class _Smoothing:
    """``scipy.ndimage.gaussian_filter(mode="nearest")`` of ``(n, h, w)`` maps, as two separable passes."""

    def __init__(self, tf, sigma: float):
        self.kernel = tf.constant(_gaussian_kernel(sigma), tf.float32) if sigma > 0 else None

    def __call__(self, tf, maps):
        if self.kernel is None:
            return maps
        radius = (int(self.kernel.shape[0]) - 1) // 2
        stack = _edge_pad(tf, maps[..., None], radius, radius, radius, radius)
        stack = tf.nn.conv2d(stack, tf.reshape(self.kernel, [-1, 1, 1, 1]), strides=1, padding="VALID")
        stack = tf.nn.conv2d(stack, tf.reshape(self.kernel, [1, -1, 1, 1]), strides=1, padding="VALID")
        return stack[..., 0]


def _largest(tf, maps):
    return tf.reduce_max(tf.reshape(maps, [tf.shape(maps)[0], -1]), axis=1)


class _ResidualJudge:
    """NCAE / CAE: the reconstruction's residual (RMS over colour channels, signed), smoothed; ``map_max``."""

    def __init__(self, tf, detector):
        self.tf, self.network, self.size, self.channels = tf, detector.model_, int(detector.input_size), \
            int(detector.channels)
        self.networks = [self.network]
        self.stride = 2 ** len(tuple(detector.widths)) if detector.trains_on_patches else 1
        self.fixed_input = not detector.trains_on_patches
        self.smoothing = _Smoothing(tf, float(detector.map_sigma))

    def __call__(self, image):
        tf = self.tf
        if self.fixed_input:
            reconstruction = self.network(image, training=False)
        else:
            padding = (-self.size) % self.stride
            padded = tf.pad(image, [[0, 0], [0, padding], [0, padding], [0, 0]], mode="REFLECT") if padding else image
            reconstruction = self.network(padded, training=False)[:, :self.size, :self.size, :]
        difference = image - reconstruction
        if self.channels == 1:
            residual = difference[..., 0]
        else:
            magnitude = tf.sqrt(tf.reduce_mean(tf.square(difference), axis=-1))
            residual = tf.where(tf.reduce_mean(difference, axis=-1) < 0, -magnitude, magnitude)
        anomaly_map = self.smoothing(tf, tf.abs(residual))
        return _largest(tf, anomaly_map), anomaly_map


class _DraemJudge:
    """DRAEM: the judge network's defect probability, smoothed; ``draem_score`` is its maximum."""

    def __init__(self, tf, detector):
        self.tf, self.network = tf, detector.model_
        self.networks = [self.network]
        self.smoothing = _Smoothing(tf, float(detector._map_sigma()))

    def __call__(self, image):
        _, probability = self.network(image, training=False)
        anomaly_map = self.smoothing(self.tf, probability[..., 0])
        return _largest(self.tf, anomaly_map), anomaly_map


class _PatchFeatures:
    """:class:`core.detectors.memory_bank.PatchFeatures` of the packaged EfficientNet-Lite0: each layer scaled,
    averaged over 3×3 neighbours (edges repeated) and resized bilinearly onto one grid."""

    def __init__(self, tf, extractor):
        self.network, self.scales, self.grid = extractor.network, list(extractor.layer_scales), extractor.grid
        self.input_scale = float(extractor.input_scale)

    def __call__(self, tf, image):
        batch = (tf.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image) * self.input_scale
        outputs = self.network(batch, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]   # a one-layer extractor (PaDiM)
        sizes = [int(output.shape[1]) * int(output.shape[2]) for output in outputs]
        chosen = outputs[int(np.argmax(sizes) if self.grid == "finest" else np.argmin(sizes))]
        height, width = int(chosen.shape[1]), int(chosen.shape[2])
        aggregated = []
        for output, scale in zip(outputs, self.scales):
            pooled = tf.nn.avg_pool2d(_edge_pad(tf, output / scale, 1, 1, 1, 1), 3, 1, "VALID")
            if (int(pooled.shape[1]), int(pooled.shape[2])) != (height, width):
                pooled = tf.image.resize(pooled, (height, width), "bilinear")   # = scipy's zoom, grid_mode=True
            aggregated.append(pooled)
        return tf.concat(aggregated, axis=-1)


class _PadimJudge:
    """PaDiM: each patch's Mahalanobis distance to its position's Gaussian; ``padim_score`` is the largest."""

    def __init__(self, tf, detector):
        self.tf, self.size = tf, int(detector.input_size)
        self.features = _PatchFeatures(tf, detector.extractor_)
        self.networks = [self.features.network]
        self.mean = tf.constant(detector.mean_, tf.float32)
        self.precision = tf.constant(detector.precision_, tf.float32)
        sigma = 4.0 * self.size / 224 if detector.map_sigma is None else float(detector.map_sigma)
        self.smoothing = _Smoothing(tf, sigma)

    def __call__(self, image):
        tf = self.tf
        difference = self.features(tf, image) - self.mean
        squared = tf.einsum("nhwi,hwij,nhwj->nhw", difference, self.precision, difference)
        grid = tf.sqrt(tf.maximum(squared, 0.0))
        anomaly_map = self.smoothing(tf, tf.image.resize(grid[..., None], (self.size, self.size), "bilinear")[..., 0])
        return _largest(tf, grid), anomaly_map


class _MemoryBankJudge:
    """Memory bank on ImageNet features: each patch's distance to its nearest bank entry (float64, as the
    fitted search computes it), rescaled by its border ring; ``patch_score`` is the largest."""

    def __init__(self, tf, detector):
        self.tf, self.size = tf, int(detector.input_size)
        self.features = _PatchFeatures(tf, detector.extractor_)
        self.networks = [self.features.network]
        bank = np.asarray(detector.memory_bank_, np.float64)
        self.bank_columns = tf.constant(np.ascontiguousarray(bank.T))   # (dim, entries): a plain matmul
        self.bank_norms = tf.constant((bank ** 2).sum(axis=1))
        self.calibration = detector.border_calibration_
        self.smoothing = _Smoothing(tf, float(detector._map_sigma()))

    def __call__(self, image):
        from core.detectors.memory_bank import border_rings

        tf = self.tf
        features = self.features(tf, image)
        height, width, dim = int(features.shape[1]), int(features.shape[2]), int(features.shape[3])

        def nearest(patches):   # one image at a time: its patches × the bank stays a few tens of MB
            patches = tf.cast(patches, tf.float64)
            squared = tf.reduce_sum(patches ** 2, axis=1, keepdims=True) + self.bank_norms[None, :] - \
                2.0 * tf.matmul(patches, self.bank_columns)
            return tf.cast(tf.sqrt(tf.maximum(tf.reduce_min(squared, axis=1), 0.0)), tf.float32)

        distances = tf.map_fn(nearest, tf.reshape(features, [-1, height * width, dim]),
                              fn_output_signature=tf.TensorSpec([height * width], tf.float32))
        ring = border_rings(height, width, self.calibration.rings).reshape(-1)
        grid = (distances - self.calibration.mean[ring]) / self.calibration.spread[ring]
        grid = tf.reshape(grid, [-1, height, width])
        anomaly_map = self.smoothing(tf, tf.image.resize(grid[..., None], (self.size, self.size), "bilinear")[..., 0])
        return _largest(tf, grid), anomaly_map


class _LatticeJudge:
    """The lattice detector (:mod:`core.detectors.lattice`) on a batch, in float64 as numpy computes it: the
    lighting removed, the autocorrelation (a DFT written as real matrix products, which ONNX also runs), the
    strongest non-parallel peaks refined by parabolas, the surface checks, the image compared with itself along
    its vectors (Keys cubic shifts, edges repeated), the median scaling, smoothing and the border rescaling."""

    def __init__(self, tf, detector):
        from core.detectors import lattice
        from core.detectors.memory_bank import border_rings

        self.tf, self.lattice, self.networks = tf, lattice, []
        size = self.size = int(detector.input_size)
        self.directions = int(detector.directions)
        # Gaussian blurs as matrix products (edges repeated): ONNX Runtime has no float64 convolution
        self.lighting = tf.constant(_blur_matrix(lattice.LIGHTING_SIGMA * size / 128, size))
        sigma = size / 64 if detector.map_sigma is None else float(detector.map_sigma)
        self.smoothing = tf.constant(_blur_matrix(sigma, size))
        angles = 2 * np.pi * np.outer(np.arange(size), np.arange(size)) / size
        self.cosines, self.sines = tf.constant(np.cos(angles)), tf.constant(np.sin(angles))
        self.searched = tf.constant(lattice.search_region(size, size, lattice.SHORTEST_VECTOR,
                                                          lattice.LONGEST_VECTOR_SHARE * size))
        offsets = np.arange(size) - size // 2
        rows, columns = np.meshgrid(offsets, offsets, indexing="ij")
        self.offsets = tf.constant(np.stack([rows.ravel(), columns.ravel()], axis=1).astype(np.float64))
        # dominant_frequency's radial average (a bincount over rounded radii) as one matrix product
        radius = lattice.frequency_radii(size, size).ravel()
        one_hot = (radius[:, None] == np.arange(size // 2)[None, :]).astype(np.float64)
        self.radial = tf.constant(one_hot / np.maximum(one_hot.sum(axis=0), 1))
        reference = detector.lattice_reference_
        self.lowest, self.highest = float(reference[:, 0].min()), float(reference[:, 0].max())
        self.weakest = float(reference[:, 1].min())
        calibration = detector.border_calibration_
        ring = border_rings(size, size, calibration.rings)
        self.ring_mean = tf.constant(calibration.mean.astype(np.float64)[ring])
        self.ring_spread = tf.constant(calibration.spread.astype(np.float64)[ring])

    def __call__(self, image):
        tf, size, lattice = self.tf, self.size, self.lattice
        grey = tf.cast(image[:, :, :, 0], tf.float64)
        count_images = tf.shape(grey)[0]
        flat = grey - self._blurred(grey, self.lighting)
        cosines, sines = self.cosines[None], self.sines[None]
        cosine_rows, sine_rows = tf.matmul(cosines, flat), tf.matmul(sines, flat)
        real = tf.matmul(cosine_rows, cosines) - tf.matmul(sine_rows, sines)
        imaginary = -(tf.matmul(sine_rows, cosines) + tf.matmul(cosine_rows, sines))
        power = real * real + imaginary * imaginary
        correlation = (tf.matmul(tf.matmul(cosines, power), cosines) -
                       tf.matmul(tf.matmul(sines, power), sines)) / float(size * size)
        correlation = _roll(tf, _roll(tf, correlation, 1, size), 2, size)   # fftshift
        centre = correlation[:, size // 2, size // 2][:, None, None]
        correlation = tf.where(centre > 0, correlation / tf.where(centre > 0, centre, 1.0), correlation)
        vectors, heights, chosen = self._vectors(correlation)
        count = tf.reduce_sum(chosen, axis=1)
        strength = tf.reduce_sum(heights * chosen, axis=1) / tf.maximum(count, 1.0)
        radial = tf.matmul(tf.reshape(power, [count_images, size * size]), self.radial)
        radial = tf.concat([tf.fill([count_images, 3], tf.constant(-1.0, tf.float64)), radial[:, 3:]], axis=1)
        frequency = tf.cast(tf.argmax(radial, axis=1), tf.float64)
        margin = lattice.FREQUENCY_MARGIN
        judged = ((tf.math.reduce_std(flat, axis=[1, 2]) > lattice.FLAT) & (count > 0) &
                  (strength >= lattice.STRENGTH_SHARE * self.weakest) &
                  (frequency >= (1 - margin) * self.lowest) & (frequency <= (1 + margin) * self.highest))
        disagreement = tf.zeros_like(flat)
        for index in range(self.directions):
            vector = vectors[:, index]
            both = tf.minimum(tf.abs(flat - self._shifted(flat, vector)), tf.abs(flat - self._shifted(flat, -vector)))
            disagreement += both * chosen[:, index][:, None, None]
        disagreement /= tf.maximum(count, 1.0)[:, None, None]
        ordered = tf.sort(tf.reshape(disagreement, [count_images, size * size]), axis=1)
        middle = size * size // 2
        typical = (ordered[:, middle - 1] + ordered[:, middle]) / 2 if size * size % 2 == 0 else ordered[:, middle]
        scaled = self._blurred(disagreement / tf.where(typical > 0, typical, 1.0)[:, None, None], self.smoothing)
        judged = judged & (typical > lattice.NO_DISAGREEMENT)
        calibrated = (scaled - self.ring_mean[None]) / self.ring_spread[None]
        anomaly_map = tf.cast(tf.where(judged[:, None, None], calibrated,
                                       tf.constant(lattice.NO_LATTICE, tf.float64)), tf.float32)
        return _largest(tf, anomaly_map), anomaly_map

    def _blurred(self, images, blur):
        blur = blur[None]
        return self.tf.matmul(self.tf.matmul(blur, images), blur, transpose_b=True)

    def _vectors(self, correlation):
        """The greedy choice of :func:`core.detectors.lattice.lattice_vectors`, for each image: candidates by
        falling height (ties: row-major order, as numpy's stable sort), each taken when not parallel to those
        taken before. Returns vectors ``(n, k, 2)``, heights ``(n, k)`` and whether each was found ``(n, k)``."""
        tf, size = self.tf, self.size
        neighbours = [_roll(tf, _roll(tf, correlation, 1, size, dy), 2, size, dx)
                      for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
        peak = (correlation >= tf.reduce_max(tf.stack(neighbours), axis=0)) & self.searched[None]
        count_images = tf.shape(correlation)[0]
        candidates = min(128, size * size)
        values, flat_index = tf.math.top_k(tf.reshape(tf.where(peak, correlation, -np.inf),
                                                      [count_images, size * size]), candidates)
        valid = tf.math.is_finite(values)
        rows = tf.clip_by_value(flat_index // size, 1, size - 2)
        columns = tf.clip_by_value(flat_index % size, 1, size - 2)

        def at(dy, dx):
            return tf.gather_nd(correlation, tf.stack([rows + dy, columns + dx], axis=2), batch_dims=1)

        def parabola(before, middle, after):
            curvature = before - 2 * middle + after
            offset = 0.5 * (before - after) / tf.where(curvature < 0, curvature, -1.0)
            return tf.where(curvature < 0, tf.clip_by_value(offset, -0.5, 0.5), 0.0)

        middle = at(0, 0)
        refined = tf.gather(self.offsets, flat_index) + tf.stack(
            [parabola(at(-1, 0), middle, at(1, 0)), parabola(at(0, -1), middle, at(0, 1))], axis=2)
        lengths = tf.norm(refined, axis=2)
        order = tf.range(candidates)[None]
        vectors, heights, chosen = [], [], []
        for _ in range(self.directions):
            first = tf.reduce_min(tf.where(valid, order, candidates), axis=1)
            found = first < candidates
            pick = tf.minimum(first, candidates - 1)
            vector = tf.gather(refined, pick, batch_dims=1)
            vectors.append(vector)
            heights.append(tf.where(found, tf.gather(values, pick, batch_dims=1), 0.0))
            chosen.append(tf.cast(found, tf.float64))
            cross = tf.abs(refined[:, :, 0] * vector[:, 1:2] - refined[:, :, 1] * vector[:, 0:1])
            apart = cross > self.lattice.PARALLEL_SINE * lengths * tf.norm(vector, axis=1, keepdims=True)
            valid = tf.where(found[:, None], valid & apart, valid)
        return tf.stack(vectors, axis=1), tf.stack(heights, axis=1), tf.stack(chosen, axis=1)

    def _shifted(self, images, vectors):
        """:func:`core.detectors.lattice.shifted` of each image by its own vector: rows, then columns, four Keys
        taps each, edges repeated."""
        tf, out = self.tf, images
        for axis in (0, 1):
            amount = vectors[:, axis]
            whole = tf.floor(amount)
            fraction = amount - whole
            distances = tf.abs(tf.constant([[-2.0, -1.0, 0.0, 1.0]], tf.float64) + fraction[:, None])
            near = 1.5 * distances ** 3 - 2.5 * distances ** 2 + 1
            far = -0.5 * distances ** 3 + 2.5 * distances ** 2 - 4 * distances + 2
            weights = tf.where(distances <= 1, near, tf.where(distances < 2, far, 0.0))
            indices = tf.range(self.size, dtype=tf.float64)[None] - whole[:, None]
            moved = tf.zeros_like(out)
            for tap in range(4):
                source = tf.cast(tf.clip_by_value(indices + (tap - 2), 0, self.size - 1), tf.int32)
                moved += weights[:, tap][:, None, None] * tf.gather(out, source, axis=axis + 1, batch_dims=1)
            out = moved
        return out


def _blur_matrix(sigma: float, size: int) -> np.ndarray:
    """``B`` with ``B @ x`` = ``scipy.ndimage.gaussian_filter1d(x, sigma, axis=0, mode="nearest")`` (identity for
    σ ≤ 0)."""
    if sigma <= 0:
        return np.eye(size)
    kernel = _gaussian_kernel(sigma)
    radius = (len(kernel) - 1) // 2
    blur = np.zeros((size, size))
    for row in range(size):
        for offset, weight in zip(range(-radius, radius + 1), kernel):
            blur[row, min(max(row + offset, 0), size - 1)] += weight
    return blur


def _roll(tf, array, axis: int, size: int, shift: int | None = None):
    """``np.roll(array, shift, axis)`` of an ``(n, h, w)`` stack along axis 1 or 2 (``shift`` default: half the
    size, i.e. fftshift), by slicing, which ONNX runs."""
    shift = size // 2 if shift is None else shift % size
    if shift == 0:
        return array
    if axis == 1:
        return tf.concat([array[:, size - shift:], array[:, :size - shift]], axis=1)
    return tf.concat([array[:, :, size - shift:], array[:, :, :size - shift]], axis=2)


def _edge_pad(tf, stack, top, bottom, left, right):
    """Pad an ``(n, h, w, c)`` stack by repeating its edge pixels (numpy's ``mode="edge"``).

    Done by gathering clipped indices rather than ``tf.repeat``: the same pixels, and it converts to ONNX
    (a repeat by zero, an image that needs no padding, does not run there)."""
    def along(stack, axis, before, after):
        length = tf.shape(stack)[axis]
        indices = tf.clip_by_value(tf.range(-before, length + after), 0, length - 1)
        return tf.gather(stack, indices, axis=axis)

    return along(along(stack, 1, top, bottom), 2, left, right)


def _Inspector(detector, decision, limits):  # noqa: N802 (a class built on first use: TensorFlow loads lazily)
    return _inspector_class()(detector, decision, limits)

