"""``python -m core``: demo data, training, scoring and evaluation from a terminal.

Exit codes: 0 success, 2 bad arguments or unreadable input (one line on stderr), 1 anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

from core.errors import InputError, Terminated
from core.files import STORAGE_ERRORS

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse prints usage plus the message; promise one line instead
        raise InputError(f"{self.prog}: {message} (see --help).")


def build_parser() -> argparse.ArgumentParser:
    from core.data.native import MAX_DEFAULT_WORKING_SIZE
    from core.data.synthetic import DEMO_IMAGE_SIZE
    from core.defaults import (DEFAULT_BOTTLENECK, DEFAULT_CORESET_RATIO, DEFAULT_EPOCHS, DEFAULT_INPUT_SIZE, DEFAULT_LOSS,
                               DEFAULT_NOISE_STD, DEFAULT_PATCH_SIZE, DEFAULT_WIDTHS, NETWORK_STRIDE)
    from core.detectors import CANDIDATE_NAMES, DETECTOR_NAMES, detectors_taking, good_for, training_options
    from core.detectors.autoencoder.losses import LOSSES
    from core.detectors.common.patch_features import IMAGENET_BACKBONES, PACKAGED_BACKBONE

    def only(option: str) -> str:   # "ncae/cae only": the registry says which detectors take an option
        return "/".join(detectors_taking(option)) + " only"

    epochs_by_detector = "; ".join(f"{name} {training_options(name).epochs}" for name in detectors_taking("epochs"))
    sizes_by_detector = "; ".join(
        f"{name} " + (f"the images' native size, at most {MAX_DEFAULT_WORKING_SIZE}" if options.size is None else
                      f"{options.size}" + (" (its backbone's, fixed)" if options.fixed_size else ""))
        for name, options in ((name, training_options(name)) for name in DETECTOR_NAMES))

    name_width = max(map(len, DETECTOR_NAMES)) + 2
    parser = _Parser(prog="python -m core", description="Residual Lab: NCAE anomaly detection for part images.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = commands.add_parser("demo-data", help="write the built-in synthetic casting set (MVTec layout)")
    demo.add_argument("--out", required=True, type=Path, help="folder to write")
    demo.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    demo.add_argument("--style", choices=("casting", "texture", "object"), default="casting",
                      help="casting: the built-in demo (default); texture: a woven mesh; object: a small "
                           "three-legged component on a plain background")
    demo.add_argument("--image-size", type=_positive_int, default=DEMO_IMAGE_SIZE,
                      help=f"side of the images in pixels (default {DEMO_IMAGE_SIZE}); the casting style above "
                           f"{DEMO_IMAGE_SIZE} px is the high-resolution variant, whose defects are pinholes and "
                           "hairline cracks only a few pixels across")
    demo.add_argument("--colour", action="store_true",
                      help="casting only: bronze parts in colour, with a colour_stain defect of the same "
                           "brightness as the metal around it (invisible in grey)")

    train = commands.add_parser(
        "train", help="train a detector on the good training images", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a detector on the good training images and save it as a run.\n\ndetectors (--model):\n" +
                    "\n".join(textwrap.fill(good_for(name), 100, initial_indent=f"  {name:<{name_width}}",
                                             subsequent_indent=" " * (name_width + 2)) for name in DETECTOR_NAMES))
    train.add_argument("--data", required=True, help="data folder, .zip, or 'demo'")
    train.add_argument("--model", choices=DETECTOR_NAMES, default="ncae", help="detector (default ncae; see above)")
    train.add_argument("--out", required=True, type=Path, help="run folder to create")
    train.add_argument("--epochs", type=_positive_int, help=f"maximum epochs ({only('epochs')}; default: {epochs_by_detector})")
    train.add_argument("--image-size", type=_positive_int,
                       help=f"working resolution: the long side in pixels that images are fitted to, aspect kept "
                            f"(default: {sizes_by_detector})")
    train.add_argument("--patch-size", type=_positive_int,
                       help=f"{only('patch_size')}: train on random crops of this many pixels, a multiple of "
                            f"{NETWORK_STRIDE} (default {DEFAULT_PATCH_SIZE} when the working resolution is above "
                            f"{DEFAULT_INPUT_SIZE} px, else whole images); whole images are scored")
    train.add_argument("--channels", type=int, choices=(1, 3),
                       help="1: grey, 3: colour (default: 3 when the training images are colour, else 1)")
    train.add_argument("--backbone", choices=(PACKAGED_BACKBONE, *IMAGENET_BACKBONES), default=PACKAGED_BACKBONE,
                       help=f"{only('backbone')}: ImageNet feature extractor (default efficientnet_lite0, installed "
                            "with the app; the others need their Keras weights file on disk)")
    train.add_argument("--coreset-ratio", type=float, default=DEFAULT_CORESET_RATIO,
                       help=f"{only('coreset_ratio')}: share of good patches kept, 0.01-0.25 (default "
                            f"{DEFAULT_CORESET_RATIO:g})")
    train.add_argument("--anomaly-source", type=Path,
                       help=f"{only('anomaly_source')}: a folder of pictures to paste as synthetic anomalies, besides "
                            "the built-in ones")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--noise-std", type=float, default=DEFAULT_NOISE_STD,
                       help=f"{only('noise_std')}: denoising training noise (default {DEFAULT_NOISE_STD:g}; 0 is off)")
    train.add_argument("--widths", type=_widths, default=DEFAULT_WIDTHS,
                       help=f"{only('widths')}: channels per encoder stage, comma-separated; the count is the depth "
                            f"(default {','.join(map(str, DEFAULT_WIDTHS))})")
    train.add_argument("--bottleneck", type=_positive_int, default=DEFAULT_BOTTLENECK,
                       help=f"{only('bottleneck')}: channels of the code (default {DEFAULT_BOTTLENECK})")
    train.add_argument("--loss", choices=LOSSES, default=DEFAULT_LOSS, help=f"{only('loss')}: training loss (default {DEFAULT_LOSS})")

    score = commands.add_parser("score", help="score images with a trained run and write scores.csv")
    score.add_argument("--run", required=True, type=Path, help="run folder made by 'train'")
    score.add_argument("--data", required=True, nargs="+",
                       help="data folder(s), .zip(s), image file(s) or URI(s) (file://, s3://... with its fsspec "
                            "package), or @LIST: a text file of paths or URIs, one per line (a file that exists "
                            "under the name given is scored itself)")
    score.add_argument("--out", required=True, type=Path,
                       help="CSV file to write, or - for standard output (with --engine: the folder the CSV shards go "
                            "into)")
    score.add_argument("--threshold-file", type=Path, help="add a verdict column using this threshold file")
    score.add_argument("--engine", choices=("dask",),
                       help="score on a Dask cluster: a local one (default) or --scheduler's; writes part-NNNNN.csv "
                            "shards and job.json into --out, and finishes an interrupted job when run again")
    score.add_argument("--scheduler", metavar="ADDRESS",
                       help="with --engine dask: an existing cluster's scheduler (tcp://host:8786); workers must reach "
                            "the run and the images under the same paths or URIs")
    score.add_argument("--workers", type=_positive_int,
                       help="with --engine dask and no --scheduler: worker processes (default: one per CPU core)")
    score.add_argument("--shard-size", type=_positive_int,
                       help="with --engine dask: images per task and per CSV shard (default 1024)")
    score.add_argument("--allow-scheme", action="append", default=[], metavar="SCHEME",
                       help="also read URIs of this scheme (only file, s3, gs, http and https are read otherwise; "
                            "repeat for more)")
    score.add_argument("--connect-timeout", type=_positive_float, metavar="SECONDS",
                       help="a remote image whose host does not accept the connection within this is INVALID "
                            "(default 10)")
    score.add_argument("--read-timeout", type=_positive_float, metavar="SECONDS",
                       help="a remote image whose host goes silent this long is INVALID (default 30)")

    evaluate = commands.add_parser("evaluate", help="AUROC, AUPRC and best F1 of every score on a labelled set")
    evaluate.add_argument("--run", required=True, type=Path, help="run folder made by 'train'")
    evaluate.add_argument("--data", required=True, help="labelled data folder, .zip or 'demo'")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    export = commands.add_parser("export", help="write a self-contained inspector (TensorFlow SavedModel and its ONNX copy) for a run")
    export.add_argument("--run", required=True, type=Path, help="run folder made by 'train' (any detector)")
    export.add_argument("--out", required=True, type=Path, help="folder to create")
    export.add_argument("--threshold-file", type=Path, help="decide with this threshold file (default: the run's own)")

    compare = commands.add_parser("compare", help="train and score every detector with several seeds, side by side")
    compare.add_argument("--data", required=True, help="labelled data folder, .zip or 'demo'")
    compare.add_argument("--seeds", type=_positive_int, default=3, help="seeds per detector (default 3)")
    compare.add_argument("--epochs", type=_positive_int, default=DEFAULT_EPOCHS,
                         help=f"maximum autoencoder epochs (default {DEFAULT_EPOCHS})")
    compare.add_argument("--image-size", type=_positive_int, default=DEFAULT_INPUT_SIZE,
                         help=f"square input size in pixels (default {DEFAULT_INPUT_SIZE})")
    compare.add_argument("--coreset-ratio", type=float, default=DEFAULT_CORESET_RATIO,
                         help=f"share of good patches kept in the memory bank, 0.01-0.25 "
                              f"(default {DEFAULT_CORESET_RATIO:g})")
    compare.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    advise = commands.add_parser(
        "advise", help="rank the detectors on your good images alone (synthetic defects on held-out good images)",
        description="Which detector suits these parts, without defect images: a share of the good training images is "
                    "held out, synthetic defects are pasted on copies of them, every detector is trained as 'train' "
                    "would on the rest, and the detectors are ranked by how well their primary score tells the "
                    "held-out good images from the defective copies. The output says how far this ranking agreed "
                    "with real defects on the project's labelled sets.")
    advise.add_argument("--data", required=True, help="data folder, .zip or 'demo' (only its good training images are "
                                                      "used)")
    advise.add_argument("--detectors", nargs="+", choices=DETECTOR_NAMES, default=list(CANDIDATE_NAMES),
                        metavar="NAME", help=f"the detectors to check (default all but the baselines: "
                                             f"{', '.join(CANDIDATE_NAMES)}; any of {', '.join(DETECTOR_NAMES)})")
    advise.add_argument("--seed", type=int, default=0, help="seed of the split, the synthetic defects and training "
                                                           "(default 0)")
    advise.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def _on_sigterm(signal_number, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if on_main_thread else None
    try:
        return _run(argv)
    except Terminated:
        print("error: terminated; no partial file is left.", file=sys.stderr)
        return 143
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run(argv: list[str] | None) -> int:
    try:
        arguments = build_parser().parse_args(argv)
        return {"demo-data": _demo_data, "train": _train, "score": _score, "evaluate": _evaluate,
                "compare": _compare, "export": _export, "advise": _advise}[
            arguments.command](arguments)
    except InputError as error:
        print(f"error: {one_line(str(error))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    except (NotADirectoryError, IsADirectoryError, PermissionError) as error:
        # the input named a thing of the wrong kind or one we may not read: the user's to fix
        where = f"{_users_path(error.filename)}: " if error.filename else ""
        print(f"error: {one_line(where + (error.strerror or str(error)))}.", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        if error.errno not in STORAGE_ERRORS:
            print(f"error: unexpected failure: {type(error).__name__}: {one_line(str(error))}", file=sys.stderr)
            return EXIT_FAILURE
        where = f"{_users_path(error.filename)}: " if error.filename else ""
        print(f"error: {one_line(where + STORAGE_ERRORS[error.errno])}; nothing was written.", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:  # the promise is one line, not a traceback
        print(f"error: unexpected failure: {type(error).__name__}: {one_line(str(error))}", file=sys.stderr)
        return EXIT_FAILURE


def _users_path(filename) -> str:
    """The path to name in an error: a scratch file or folder of ours (``.NAME.*.partial``) is named by the folder
    the user gave, never by its own name."""
    path = Path(str(filename))
    return str(path.parent) if path.name.startswith(".") and path.name.endswith(".partial") else str(path)


def one_line(text: str) -> str:
    """A message that stays on one line whatever a file name holds (newlines, carriage returns, tabs)."""
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)


def _demo_data(arguments) -> int:
    from core.data.synthetic import generate_demo_set

    import shutil
    import tempfile

    out = arguments.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not an empty folder.")
    if not 32 <= arguments.image_size <= 1024:
        raise InputError("--image-size must be from 32 to 1024 pixels.")
    if arguments.colour and arguments.style != "casting":
        raise InputError("--colour applies to --style casting only.")
    out.parent.mkdir(parents=True, exist_ok=True)
    # written beside its destination and renamed at the end: a full disk or Ctrl-C leaves no set that loads
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        generate_demo_set(scratch / "set", size=arguments.image_size, seed=arguments.seed, style=arguments.style,
                          colour=arguments.colour)
        if out.exists():
            out.rmdir()  # empty, checked above; fails if someone wrote into it meanwhile
        os.replace(scratch / "set", out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote the generated {arguments.style} set to {out}", file=sys.stderr)
    return EXIT_OK


def _train(arguments) -> int:
    from core.data.datasets import open_dataset
    from core.runs.bundles import INPUT_SIZE_RANGE
    from core.runs.store import claim_run_folder

    out = arguments.out
    _check_training_options(arguments)
    if arguments.image_size is not None and not INPUT_SIZE_RANGE[0] <= arguments.image_size <= INPUT_SIZE_RANGE[1]:
        raise InputError(f"--image-size must be from {INPUT_SIZE_RANGE[0]} to {INPUT_SIZE_RANGE[1]} pixels.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not an empty folder; choose a new run folder.")
    with open_dataset(arguments.data) as dataset:
        from core.defaults import MIN_TRAINING_IMAGES

        if len(dataset.train_good) < MIN_TRAINING_IMAGES:
            raise InputError(f"{arguments.data}: training needs at least {MIN_TRAINING_IMAGES} good images, "
                             f"this data set has {len(dataset.train_good)}.")
        from core.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        from core.detectors.base import TrainingCancelled
        from core.detectors.features import BackboneUnavailable
        from core.runs.pipeline import train_run

        try:
            detector = _new_detector(arguments, [sample.path for sample in dataset.train_good])
        except (ValueError, BackboneUnavailable) as error:
            raise InputError(str(error)) from None
        try:
            claim_run_folder(out)
        except (FileExistsError, NotADirectoryError):
            raise InputError(f"{out}: another training has claimed this run folder; choose a new one.") from None
        summary = dataset.summary()
        print(f"training {arguments.model} on {summary['train_good']} good images ({summary['layout']} layout), "
              f"{_resolution_words(detector, summary['train_good'])}", file=sys.stderr)
        try:
            with _stop_on_first_ctrl_c() as interrupted:
                try:
                    train_run(dataset, out, detector, progress=_print_progress, should_stop=interrupted.is_set,
                              warn=lambda message: print(f"warning: {message}", file=sys.stderr))
                except TrainingCancelled:
                    raise KeyboardInterrupt from None   # the run already says "cancelled"
        except ValueError as error:  # e.g. too few of the good images could be read; the run says "failed"
            raise InputError(f"{out}: training failed: {error}") from None
    epochs = f", {len(detector.history_['loss'])} epochs" if detector.history_ else ""
    print(f"saved run to {out} ({detector.training_seconds_:.1f} s{epochs})", file=sys.stderr)
    return EXIT_OK


@contextlib.contextmanager
def _stop_on_first_ctrl_c():
    """The first Ctrl-C asks training to stop after the current epoch (a KeyboardInterrupt raised inside
    TensorFlow's C++ code can crash the process); a second one interrupts at once, as usual."""
    interrupted = threading.Event()

    def first(signal_number, frame):
        interrupted.set()
        print("stopping after this epoch (Ctrl-C again to stop at once)", file=sys.stderr)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    try:
        previous = signal.signal(signal.SIGINT, first)
    except ValueError:   # not the main thread (e.g. main() called from a worker): leave signals alone
        yield interrupted
        return
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


# the train options the registry (core.detectors.OPTION_APPLIES) says apply to some detectors only, as flags
_TRAIN_FLAGS = {"epochs": "--epochs", "patch_size": "--patch-size", "anomaly_source": "--anomaly-source",
                "backbone": "--backbone"}


def _check_training_options(arguments) -> None:
    """Options that do not apply to the chosen detector are refused, not silently ignored; the registry says
    which apply (``core.detectors``)."""
    from core.detectors import applies, detectors_taking, training_options
    from core.detectors.common.patch_features import PACKAGED_BACKBONE

    model = arguments.model
    options = training_options(model)
    if not math.isfinite(arguments.noise_std) or not 0 <= arguments.noise_std <= 1:
        raise InputError(f"--noise-std must be a number from 0 to 1, got {arguments.noise_std!r}.")
    if not math.isfinite(arguments.coreset_ratio) or not 0.01 <= arguments.coreset_ratio <= 0.25:
        raise InputError("--coreset-ratio must be between 0.01 and 0.25.")
    if options.fixed_size and arguments.image_size not in (None, options.size):
        raise InputError(f"--image-size: {model} works at its backbone's native {options.size} px; leave the option "
                         "out.")
    if options.colour == "grey" and arguments.channels == 3:
        raise InputError(f"--channels 3: {model} compares grey images with themselves; leave the option out.")
    if arguments.image_size is not None and not options.fixed_size and arguments.image_size < options.min_size:
        raise InputError(f"--image-size: {model} needs at least {options.min_size} px to see a few periods.")
    given = {"epochs": arguments.epochs, "patch_size": arguments.patch_size, "anomaly_source": arguments.anomaly_source,
             "backbone": None if arguments.backbone == PACKAGED_BACKBONE else arguments.backbone}
    for option, value in given.items():
        if value is not None and not applies(model, option):
            if option == "epochs":
                raise InputError(f"--epochs: {model} is not trained in epochs (it is fitted in one pass).")
            raise InputError(f"{_TRAIN_FLAGS[option]} applies to --model {' and '.join(detectors_taking(option))} "
                             "only.")
    if arguments.anomaly_source is not None and not arguments.anomaly_source.is_dir():
        raise InputError(f"{arguments.anomaly_source}: the anomaly source folder does not exist.")


def _new_detector(arguments, training_paths: list):
    """The unfitted detector the ``train`` arguments describe (``ValueError`` for values it refuses, before any
    image is read)."""
    from core.detectors import detector_for_images

    anomaly_source = str(arguments.anomaly_source.resolve()) if arguments.anomaly_source else None
    return detector_for_images(
        arguments.model, training_paths, arguments.seed, image_size=arguments.image_size,
        patch_size=arguments.patch_size, channels=arguments.channels, epochs=arguments.epochs,
        widths=arguments.widths, bottleneck=arguments.bottleneck, loss=arguments.loss, noise_std=arguments.noise_std,
        anomaly_source=anomaly_source, backbone=arguments.backbone, coreset_ratio=arguments.coreset_ratio)


def _resolution_words(detector, training_images: int) -> str:
    """How the detector will see the images, and for an autoencoder how long training may take."""
    colour = "colour" if detector.channels == 3 else "grey"
    patch = getattr(detector, "patch_size", None)
    words = f"{detector.input_size} px {colour}" + (f", on random {patch} px patches" if patch else "")
    from core.detectors import training_options

    if training_options(detector.kind).patches:   # the estimate is measured for the autoencoders' training
        from core.data.native import estimated_training_seconds, rough_duration

        seconds = estimated_training_seconds(int(detector.input_size), patch, int(detector.epochs), training_images)
        words += f"; at most about {rough_duration(seconds)} on a 2-core machine"
    return words


def _print_progress(update) -> None:
    print(f"epoch {update.epoch}/{update.epochs}  loss {update.loss:.5f}  val_loss {update.val_loss:.5f}  "
          f"{update.elapsed_seconds:.0f} s elapsed, at most {update.seconds_left:.0f} s left", file=sys.stderr)


def _threshold_of_run(arguments) -> tuple[dict, dict | None]:
    """The run's manifest and the ``--threshold-file`` document (``None`` without one), refused when the file
    was made for another model or names a score column the run does not compute."""
    from core.detectors import score_columns_of
    from core.evaluation.thresholds import read_threshold_file
    from core.runs.bundles import read_manifest

    manifest = read_manifest(arguments.run)
    threshold = read_threshold_file(arguments.threshold_file) if arguments.threshold_file else None
    if threshold is not None:
        expected = threshold["run"].get("model_sha256") if isinstance(threshold.get("run"), dict) else None
        if expected and expected != manifest["model_sha256"]:
            raise InputError(f"{arguments.threshold_file}: this threshold was made for another model.")
        columns = manifest.get("score_columns") or score_columns_of(manifest["model_kind"])
        if threshold["score_column"] not in columns:
            raise InputError(f"{arguments.threshold_file}: this threshold is on score column "
                             f"{threshold['score_column']!r}, which {arguments.run} ({manifest['model_kind']}) does "
                             f"not compute ({', '.join(columns)}).")
    return manifest, threshold


def _export(arguments) -> int:
    from core.quiet import import_tensorflow_quietly

    _, threshold = _threshold_of_run(arguments)   # refused before TensorFlow is loaded
    import_tensorflow_quietly()
    from core.runs.export import export_inspector

    out = export_inspector(arguments.run, arguments.out, threshold)
    onnx = json.loads((out / "manifest.json").read_text())["onnx"]
    print(f"wrote the inspector to {out} (SavedModel in {out / 'saved_model'}"
          f"{', ONNX copy in ' + str(out / onnx['file']) if onnx['written'] else ''}, manifest.json beside it)",
          file=sys.stderr)
    if not onnx["written"]:
        print(f"warning: no ONNX copy: {one_line(onnx['why'])}", file=sys.stderr)
    return EXIT_OK


def _score(arguments) -> int:
    from core.decision import Decision
    from core.files import NotARegularFile, atomic_writer, refuse_unless_regular

    manifest, threshold = _threshold_of_run(arguments)
    _remote_read_settings(arguments)
    from core.runs.bundles import is_sealed

    if not is_sealed(manifest):
        print(f"warning: {arguments.run} was saved before runs carried their manifest's own SHA-256: an edit of its "
              "default decision could not be told (train it again to seal it)", file=sys.stderr)
    out = arguments.out
    engine_only = [f"--{name.replace('_', '-')}" for name in ("scheduler", "workers", "shard_size")
                   if getattr(arguments, name) is not None]
    if engine_only and arguments.engine is None:
        raise InputError(f"{', '.join(engine_only)} only apply with --engine dask.")
    if arguments.scheduler is not None and arguments.workers is not None:
        raise InputError("--workers sizes the local cluster; with --scheduler the cluster has its own workers.")
    if out.is_dir() and arguments.engine is None:
        raise InputError(f"{out}: is a folder; --out must name the CSV file to write.")
    if arguments.engine is None and not _is_standard_output(out):
        try:
            refuse_unless_regular(out)
        except NotARegularFile:
            raise InputError(f"{out}: not a regular file; --out names a CSV file to write (or - for standard "
                             "output), and a device, pipe or link is never replaced.") from None
    datasets = []
    try:
        items = _score_items(arguments.data, out, datasets)
        if arguments.engine is None:
            from core.quiet import import_tensorflow_quietly

            import_tensorflow_quietly()
            from core.runs.bundles import load_bundle

            detector = load_bundle(arguments.run)
        else:   # the workers load it; this process needs only the decision and the warnings, not TensorFlow
            detector = _RunFacts(manifest)
        if threshold is not None:
            decision = Decision(threshold["score_column"], threshold["threshold"],
                                (threshold.get("review_band") or {}).get("review_from"),
                                f"threshold file {arguments.threshold_file}")
        else:
            decision = detector.default_decision_
            if decision is None:
                print(f"warning: {arguments.run} was saved before runs carried a default decision; no verdict "
                      "column is written (give --threshold-file, or train the run again)", file=sys.stderr)
        if detector.frame_limits_ is None:
            print(f"warning: {arguments.run} was saved before the frame check existed; frames are not checked "
                  "(train the run again to get it)", file=sys.stderr)
        if arguments.engine == "dask":
            return _score_on_dask(arguments, manifest, items, decision)
        from core.runs.pipeline import write_judged_rows

        if _is_standard_output(out):   # pipelines read the CSV from standard output; messages stay on stderr
            written = write_judged_rows(sys.stdout, detector, items, decision)
            sys.stdout.flush()
            _refuse_when_nothing_was_read(written.rows, written.unreadable)
        else:
            with atomic_writer(out, "w") as handle:
                written = write_judged_rows(handle, detector, items, decision)
                # raising inside the block removes the partial file: nothing is left behind
                _refuse_when_nothing_was_read(written.rows, written.unreadable)
    finally:
        for dataset in datasets:
            dataset.close()
    for message in written.unreadable:   # told at the end: if nothing could be read, the one error line says it all
        print(f"warning: {one_line(message)}", file=sys.stderr)
    judged = f" ({_verdict_words(written.verdicts)}; decision: {decision.describe()})" if decision is not None else ""
    where = "standard output" if _is_standard_output(out) else out
    print(f"scored {written.rows} images into {where}{judged}", file=sys.stderr)
    return EXIT_OK


def _remote_read_settings(arguments) -> None:
    """The remote-read options, as the environment the readers (and Dask's local workers) consult."""
    from core.data import remote

    if arguments.allow_scheme:
        known = [name for name in os.environ.get(remote.SCHEMES_VARIABLE, "").split(",") if name]
        os.environ[remote.SCHEMES_VARIABLE] = ",".join([*known, *(name.lower() for name in arguments.allow_scheme)])
    for value, variable in ((arguments.connect_timeout, remote.CONNECT_TIMEOUT_VARIABLE),
                            (arguments.read_timeout, remote.READ_TIMEOUT_VARIABLE)):
        if value is not None:
            os.environ[variable] = str(value)


def _is_standard_output(out: Path) -> bool:
    return str(out) in ("-", "/dev/stdout")


def _refuse_when_nothing_was_read(rows: int, unreadable: list[str]) -> None:
    from core.evaluation.scoring import UNREADABLE

    if rows == 0:
        raise InputError("there are no images to score in the given data.")
    if len(unreadable) == rows:
        first = unreadable[0].removeprefix(UNREADABLE)
        raise InputError(first if rows == 1 else f"none of the {rows} given images could be read ({first})")


def _verdict_words(verdicts: dict[str, int]) -> str:
    return ", ".join(f"{verdicts[name]} {name}" for name in ("OK", "REVIEW", "NG", "INVALID") if name in verdicts)


class _RunFacts:
    """What ``score`` needs of a run before scoring when the workers, not this process, load it."""

    def __init__(self, manifest: dict):
        from core.decision import Decision

        self.default_decision_ = Decision.from_json(manifest["default_decision"]) \
            if manifest.get("default_decision") else None
        self.frame_limits_ = manifest.get("frame_check")


def _score_on_dask(arguments, manifest: dict, items: list, decision) -> int:
    from core.runs.dask_scoring import DEFAULT_SHARD_SIZE, score_on_dask

    if not items:   # refused before a cluster is started
        raise InputError("there are no images to score in the given data.")
    last = {"told": None}
    where = f"the Dask cluster at {arguments.scheduler}" if arguments.scheduler else \
        f"a local Dask cluster of {arguments.workers or os.cpu_count() or 1} workers"

    def tell(done: int, total: int, shards_done: int, shards: int) -> None:
        now = time.monotonic()
        if last["told"] is None:   # the cluster is up (a job with every shard on disk starts none)
            print(f"scoring {total} images on {where}", file=sys.stderr, flush=True)
        if last["told"] is None or shards_done == shards or now - last["told"] >= 2.0:
            last["told"] = now
            print(f"scored {done}/{total} images ({shards_done}/{shards} shards)", file=sys.stderr, flush=True)

    summary = score_on_dask(arguments.run, manifest["model_sha256"], items, decision, arguments.out,
                            scheduler=arguments.scheduler, workers=arguments.workers,
                            shard_size=arguments.shard_size or DEFAULT_SHARD_SIZE, progress=tell)
    _refuse_when_nothing_was_read(summary.images, summary.unreadable)
    for message in summary.unreadable:
        print(f"warning: {one_line(message)}", file=sys.stderr)
    judged = f"; {_verdict_words(summary.verdicts)}; decision: {decision.describe()}" if decision is not None else ""
    if summary.shards_skipped == summary.shards:
        print(f"all {summary.shards} shards of this job were already written in {arguments.out}: nothing left to "
              f"score{judged}", file=sys.stderr)
        return EXIT_OK
    kept = f"; {summary.shards_skipped} shards were already written" if summary.shards_skipped else ""
    print(f"scored {summary.images} images into {summary.shards} shards in {arguments.out} "
          f"({summary.images_per_second:.1f} images/s{kept}{judged})", file=sys.stderr)
    return EXIT_OK


def _score_items(data: list[str], out: Path, datasets: list) -> list:
    """Every image the ``--data`` arguments name, as score items, in the order given."""
    from core.data.datasets import ScoreItem, dataset_items, open_dataset
    from core.errors import DatasetError
    from core.data.images import is_image_name, is_uri

    items = []
    out_resolved = out.resolve()
    for argument in data:
        path = Path(argument)
        # a file that exists is a file, even when its name starts with "@" or looks like a URI
        if is_uri(argument) and not path.exists():   # read when scored; unreadable: an INVALID row
            items.append(ScoreItem(argument, argument))
            continue
        if argument.startswith("@") and not path.exists():
            items += _listed_items(Path(argument[1:]))
            continue
        if argument == "demo" and not path.exists():
            dataset = open_dataset("demo")
            datasets.append(dataset)
            items += dataset_items(dataset, dataset.test)
            continue
        if not path.exists():
            raise DatasetError(f"{path}: no such file or folder.")
        if path.resolve() == out_resolved:
            raise InputError(f"{out}: --out is also given as input; choose another output file.")
        if path.is_file() and path.suffix.lower() != ".zip":
            items.append(ScoreItem(path, str(path)))
        elif path.is_dir() and not _has_layout(path):
            files = sorted(p for p in path.iterdir() if p.is_file() and is_image_name(p.name))
            if not files:
                raise DatasetError(f"{path}: folder holds no images and no data set layout.")
            if out_resolved in {file.resolve() for file in files}:
                raise InputError(f"{out}: --out is one of the input images; choose another output file.")
            items += [ScoreItem(file, str(file)) for file in files]
        elif path.is_dir() or path.is_file():
            dataset = open_dataset(path)
            datasets.append(dataset)
            # every image under it, whatever the layout: a layout's train/test split is for training and
            # evaluating, never a reason to leave a file the user asked to score without a row
            items += dataset_items(dataset, dataset.samples)
        else:
            raise DatasetError(f"{path}: not a regular file or folder.")
    return items


def _listed_items(listing: Path) -> list:
    """The images a list file names: one path or URI per line; blank lines and ``#`` comments are skipped.
    Entries are not opened here (a list may name millions): one that cannot be read is an INVALID row."""
    from core.data.datasets import ScoreItem
    from core.errors import DatasetError

    from core.data.images import read_regular_file

    try:
        entries = [line.strip() for line in read_regular_file(listing).decode("utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{listing}: cannot read the list of images "
                           f"({getattr(error, 'strerror', None) or error}).") from None
    items = [ScoreItem(entry, entry) for entry in entries if entry and not entry.startswith("#")]
    if not items:
        raise DatasetError(f"{listing}: the list names no images.")
    return items


def _has_layout(path: Path) -> bool:
    return any((path / name).is_dir() for name in ("train", "test", "good"))


def _evaluate(arguments) -> int:
    from core.runs.bundles import read_manifest
    from core.data.datasets import open_dataset

    read_manifest(arguments.run)
    with open_dataset(arguments.data) as dataset:
        from core.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        from core.runs.bundles import load_bundle
        from core.evaluation.evaluate import evaluate

        detector = load_bundle(arguments.run)
        report, _ = evaluate(detector, dataset)
    for name, message in report["unreadable"].items():
        print(f"warning: skipped {message}", file=sys.stderr)
    if arguments.json:
        print(json.dumps(report))
        return EXIT_OK
    print(f"{report['n_good']} good, {report['n_defect']} defect test images; model {report['model_kind']}")
    print(f"{'score':<14}{'AUROC':>8}{'AUPRC':>8}{'best F1':>9}{'at threshold':>15}")
    for column, values in report["scores"].items():
        print(f"{column:<14}{_fmt(values['image_auroc']):>8}{_fmt(values['image_auprc']):>8}"
              f"{_fmt(values['best_f1']):>9}{_fmt(values['best_f1_threshold'], 6):>15}")
    pixel = report["pixel"]
    if pixel["pixel_auroc"] is not None:
        print(f"pixel AUROC {_fmt(pixel['pixel_auroc'])}, pixel AUPRO (FPR ≤ 0.3) {_fmt(pixel['pixel_aupro'])}")
    return EXIT_OK


def _compare(arguments) -> int:
    from core.data.datasets import open_dataset

    if not 0.01 <= arguments.coreset_ratio <= 0.25:
        raise InputError("--coreset-ratio must be between 0.01 and 0.25.")
    with open_dataset(arguments.data) as dataset:
        from core.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        from core.evaluation.compare import compare_detectors, comparison_rows
        from core.detectors.autoencoder.models import build_autoencoder

        try:
            build_autoencoder("ncae", arguments.image_size)
        except ValueError as error:
            raise InputError(str(error)) from None
        report = compare_detectors(dataset, arguments.seeds,
                                   {"input_size": arguments.image_size, "epochs": arguments.epochs},
                                   {"coreset_ratio": arguments.coreset_ratio},
                                   progress=lambda message: print(message, file=sys.stderr))
    if arguments.json:
        print(json.dumps(report))
        return EXIT_OK
    rows = comparison_rows(report)
    print(f"{report['n_good']} good, {report['n_defect']} defect test images; {report['seeds']} seeds; "
          f"mean ± std over seeds")
    widths = {key: max(len(key), *(len(row[key]) for row in rows)) for key in rows[0]}
    print("  ".join(key.ljust(widths[key]) for key in rows[0]))
    for row in rows:
        print("  ".join(row[key].ljust(widths[key]) for key in row))
    print(f"note: {report['supervised_warning']}")
    return EXIT_OK


def _advise(arguments) -> int:
    from core.data.datasets import open_dataset
    from core.errors import DatasetError

    with open_dataset(arguments.data) as dataset:
        from core.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        from core.evaluation.detector_check import check_rows, detector_check

        try:
            report = detector_check(dataset, tuple(dict.fromkeys(arguments.detectors)), arguments.seed,
                                    progress=lambda message: print(message, file=sys.stderr))
        except DatasetError as error:
            raise InputError(str(error)) from None
    if arguments.json:
        print(json.dumps(report))
        return EXIT_OK
    print(f"trained on {report['training_images']} good images; judged on {report['held_out_images']} held-out good "
          f"images and the same images with a synthetic defect pasted in")
    rows = [{key: str(value) for key, value in row.items() if key != "name"} for row in check_rows(report)]
    widths = {key: max(len(key), *(len(row[key]) for row in rows)) for key in rows[0]}
    print("  ".join(key.ljust(widths[key]) for key in rows[0]))
    for row in rows:
        print("  ".join(row[key].ljust(widths[key]) for key in row))
    if report["pick"]:
        print(f"{'recommended' if report['recommendation'] else 'first on this check'}: {report['pick']}")
    print(f"note: {report['how_far_to_trust_it']}")
    return EXIT_OK


def _fmt(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}" if digits > 4 else f"{value:.4f}"


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number of seconds")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(_positive_int(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive whole numbers, got {text!r}") from None
