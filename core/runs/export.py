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
   - lattice: the whole of :mod:`core.detectors.lattice.detector` in float64 (its DFT and Gaussian blurs as matrix
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

import contextlib
import datetime as _dt
import functools
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from core.errors import InputError
from core.detectors.common.graph import edge_pad
from core.files import STORAGE_ERRORS

EXPORT_FORMAT = "residual-lab-inspector/1"
PRECISION_BITS = 32 - 8 - 2     # Pillow's fixed-point precision for 8-bit resampling
ONNX_OPSET = 17
ONNX_TOLERANCE = 1e-5           # largest score difference from the SavedModel an ONNX file may show, relative to
                                # the score (at least 1): float32 round-off in another runtime's kernels


# One export at a time per process (the dashboard's sessions are threads): detectors on the packaged backbone share
# its feature network, which an export traces into a graph, and tf2onnx keeps converter state in module globals.
_EXPORT_LOCK = threading.Lock()


def export_inspector(run_dir: Path, out: Path, threshold_document: dict | None = None) -> Path:
    """Write the inspector for the run in ``run_dir`` into the new folder ``out``; ``InputError`` when it cannot."""
    with _EXPORT_LOCK:
        return _export_inspector(run_dir, out, threshold_document)


def _export_inspector(run_dir: Path, out: Path, threshold_document: dict | None) -> Path:
    import tensorflow as tf

    from core.files import atomic_write_json
    from core.detectors.saving import sha256_of
    from core.runs.bundles import load_bundle, read_manifest
    from core.evaluation.scoring import frame_limits_of

    manifest = read_manifest(run_dir)
    detector = load_bundle(run_dir)
    why_not = detector.export_refusal()
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
        _convert_saved_model(saved_model, path)
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


def _convert_saved_model(saved_model: Path, path: Path) -> None:
    """What ``python -m tf2onnx.convert --saved-model`` does, in this process: from the *written* SavedModel (the
    converter's function API does not carry the module's variables into a tf.function's graph), the signature's
    output names kept ("score", "verdict", ...). In process it spares a second TensorFlow import: about 5 s of
    the export's 17 on the demo model. Its log is kept out of ours; :data:`_EXPORT_LOCK` is held."""
    import logging

    from tf2onnx import tf_loader
    from tf2onnx.convert import from_graph_def

    converter_log = logging.getLogger("tf2onnx")
    level = converter_log.level
    converter_log.setLevel(logging.ERROR)
    try:
        graph_def, inputs, outputs, renamed = tf_loader.from_saved_model(
            str(saved_model), None, None, tag="serve", signatures=["serving_default"], return_tensors_to_rename=True)
        convert = functools.partial(from_graph_def, graph_def, input_names=inputs, output_names=outputs,
                                    opset=ONNX_OPSET, tensors_to_rename=renamed, output_path=str(path))
        # The converter copies the whole graph before each of its dozen optimisers so that one which fails can be
        # skipped: half of the conversion of an ImageNet backbone. It skips the copies whenever the variable below
        # is set, whatever its value (tf2onnx 1.17 tests the variable's name, not its value), and catches nothing
        # then: so first without the copies, and only if an optimiser fails, again the careful way.
        try:
            with _environment(TF2ONNX_CATCH_ERRORS="FALSE"):
                convert()
        except OSError:
            raise
        except Exception:  # noqa: BLE001 (an optimiser that failed: the careful way skips it)
            path.unlink(missing_ok=True)
            with _environment(TF2ONNX_CATCH_ERRORS=None):
                convert()
    finally:
        converter_log.setLevel(level)
    if not path.is_file():
        raise ValueError("tf2onnx wrote no file")


@contextlib.contextmanager
def _environment(**values: str | None):
    """The converter reads some of its settings from the environment only: set (or, for None, unset) for the
    duration; the export lock is held, and nothing else reads these."""
    def put(settings: dict) -> None:
        for name, value in settings.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    before = {name: os.environ.get(name) for name in values}
    put(values)
    try:
        yield
    finally:
        put(before)


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


def _inspector_class():
    import tensorflow as tf

    class Inspector(tf.Module):
        """Raw pixels → the run's working image → its frame check, score and map (``judge``) → the verdict."""

        def __init__(self, detector, decision, limits):
            super().__init__()
            self.judge = detector.inspector_judge(tf)
            self.networks = list(self.judge.networks)   # tracked here, so the SavedModel holds their weights
            self.size = int(detector.input_size)
            self.channels = int(detector.channels)
            self.threshold = float(decision.threshold)
            self.review_from = float(decision.threshold if decision.review_from is None else decision.review_from)
            self.limits = limits

        # the graph is written with tf.cond throughout: without autograph's rewriting of the Python source, the
        # trace takes a third of the time
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8, name="images")],
                     autograph=False)
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
                return edge_pad(tf, out, top, spare_rows - top, left, spare_columns - left)

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


def _Inspector(detector, decision, limits):  # noqa: N802 (a class built on first use: TensorFlow loads lazily)
    return _inspector_class()(detector, decision, limits)

