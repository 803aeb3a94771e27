"""``python -m core``: demo data, training, scoring and evaluation from a terminal.

Exit codes: 0 success, 2 bad arguments or unreadable input (one line on stderr), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import InputError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse prints usage plus the message; promise one line instead
        raise InputError(f"{self.prog}: {message} (see --help).")


def build_parser() -> argparse.ArgumentParser:
    from core.defaults import (DEFAULT_BOTTLENECK, DEFAULT_EPOCHS, DEFAULT_INPUT_SIZE, DEFAULT_LOSS,
                               DEFAULT_NOISE_STD, DEFAULT_WIDTHS, MODEL_KINDS, DEFAULT_CORESET_RATIO)
    from core.losses import LOSSES

    parser = _Parser(prog="python -m core", description="Residual Lab: NCAE anomaly detection for part images.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = commands.add_parser("demo-data", help="write the built-in synthetic casting set (MVTec layout)")
    demo.add_argument("--out", required=True, type=Path, help="folder to write")
    demo.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    demo.add_argument("--style", choices=("casting", "texture", "object"), default="casting",
                      help="casting: the built-in demo (default); texture: a woven mesh; object: a small "
                           "three-legged component on a plain background")

    train = commands.add_parser("train", help="train a detector on the good training images")
    train.add_argument("--data", required=True, help="data folder, .zip, or 'demo'")
    train.add_argument("--model", choices=MODEL_KINDS, default="ncae", help="network (default ncae)")
    train.add_argument("--out", required=True, type=Path, help="run folder to create")
    train.add_argument("--epochs", type=_positive_int, default=DEFAULT_EPOCHS,
                       help=f"maximum epochs (default {DEFAULT_EPOCHS})")
    train.add_argument("--image-size", type=_positive_int, default=DEFAULT_INPUT_SIZE,
                       help=f"square input size in pixels (default {DEFAULT_INPUT_SIZE})")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--noise-std", type=float, default=DEFAULT_NOISE_STD,
                       help=f"denoising training noise (default {DEFAULT_NOISE_STD:g}; 0 is off)")
    train.add_argument("--widths", type=_widths, default=DEFAULT_WIDTHS,
                       help=f"channels per encoder stage, comma-separated; the count is the depth "
                            f"(default {','.join(map(str, DEFAULT_WIDTHS))})")
    train.add_argument("--bottleneck", type=_positive_int, default=DEFAULT_BOTTLENECK,
                       help=f"channels of the code (default {DEFAULT_BOTTLENECK})")
    train.add_argument("--loss", choices=LOSSES, default=DEFAULT_LOSS, help=f"training loss (default {DEFAULT_LOSS})")

    score = commands.add_parser("score", help="score images with a trained run and write scores.csv")
    score.add_argument("--run", required=True, type=Path, help="run folder made by 'train'")
    score.add_argument("--data", required=True, nargs="+", help="data folder(s), .zip(s) or image file(s)")
    score.add_argument("--out", required=True, type=Path, help="CSV file to write")
    score.add_argument("--threshold-file", type=Path, help="add a verdict column using this threshold file")

    evaluate = commands.add_parser("evaluate", help="AUROC, AUPRC and best F1 of every score on a labelled set")
    evaluate.add_argument("--run", required=True, type=Path, help="run folder made by 'train'")
    evaluate.add_argument("--data", required=True, help="labelled data folder, .zip or 'demo'")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

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
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        arguments = build_parser().parse_args(argv)
        return {"demo-data": _demo_data, "train": _train, "score": _score, "evaluate": _evaluate,
                "compare": _compare}[
            arguments.command](arguments)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    except Exception as error:  # the promise is one line, not a traceback
        print(f"error: unexpected failure: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILURE


def _demo_data(arguments) -> int:
    from core.synthetic import generate_demo_set

    out = arguments.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not an empty folder.")
    generate_demo_set(out, seed=arguments.seed, style=arguments.style)
    print(f"wrote the generated {arguments.style} set to {out}", file=sys.stderr)
    return EXIT_OK


def _train(arguments) -> int:
    from core.datasets import open_dataset

    out = arguments.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not an empty folder; choose a new run folder.")
    if arguments.noise_std < 0:
        raise InputError("--noise-std must be zero or positive.")
    with open_dataset(arguments.data) as dataset:
        from core.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        from core.detector import ResidualDetector
        from core.pipeline import train_run

        try:
            detector = ResidualDetector(model=arguments.model, input_size=arguments.image_size,
                                        widths=arguments.widths, bottleneck=arguments.bottleneck,
                                        loss=arguments.loss, epochs=arguments.epochs, seed=arguments.seed,
                                        noise_std=arguments.noise_std)
            from core.models import build_autoencoder

            build_autoencoder(arguments.model, arguments.image_size, arguments.widths, arguments.bottleneck)
        except ValueError as error:
            raise InputError(str(error)) from None
        summary = dataset.summary()
        print(f"training {arguments.model} on {summary['train_good']} good images ({summary['layout']} layout)",
              file=sys.stderr)
        train_run(dataset, out, detector, progress=_print_progress,
                  warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    print(f"saved run to {out} ({detector.training_seconds_:.1f} s, "
          f"{len(detector.history_['loss'])} epochs)", file=sys.stderr)
    return EXIT_OK


def _print_progress(update) -> None:
    print(f"epoch {update.epoch}/{update.epochs}  loss {update.loss:.5f}  val_loss {update.val_loss:.5f}  "
          f"{update.elapsed_seconds:.0f} s elapsed, at most {update.seconds_left:.0f} s left", file=sys.stderr)


def _score(arguments) -> int:
    import pandas as pd

    from core.bundles import read_manifest
    from core.datasets import open_dataset
    from core.errors import DatasetError
    from core.files import atomic_write_text
    from core.errors import ImageDecodeError
    from core.images import decode_image, is_image_name
    from core.metrics import verdicts_at
    from core.runs import scores_csv
    from core.thresholds import read_threshold_file

    manifest = read_manifest(arguments.run)
    threshold = read_threshold_file(arguments.threshold_file) if arguments.threshold_file else None
    if threshold is not None:
        expected = threshold.get("run", {}).get("model_sha256")
        if expected and expected != manifest["model_sha256"]:
            raise InputError(f"{arguments.threshold_file}: this threshold was made for another model.")
    size = int(manifest["input_size"])
    # decode before TensorFlow loads so unreadable input fails fast and quietly
    candidates, datasets = [], []
    try:
        for item in arguments.data:
            path = Path(item)
            if path.is_file() and not path.suffix.lower() == ".zip":
                candidates.append(path)
            elif path.is_dir() and not any(path.iterdir()):
                raise DatasetError(f"{path}: folder is empty.")
            elif path.is_dir() and not _has_layout(path) and any(is_image_name(p.name) for p in path.iterdir()):
                candidates += sorted(p for p in path.iterdir() if p.is_file() and is_image_name(p.name))
            else:
                datasets.append(open_dataset(path))
        loose_files, unreadable = [], []
        for path in candidates:
            try:
                decode_image(path, size)
                loose_files.append(path)
            except ImageDecodeError as error:
                unreadable.append(str(error))
        if unreadable and not loose_files and not datasets:
            raise InputError(unreadable[0] if len(unreadable) == 1 else
                             f"none of the {len(unreadable)} given images could be read ({unreadable[0]})")
        from core.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        from core.bundles import load_bundle
        from core.pipeline import score_samples, score_sources

        detector = load_bundle(arguments.run)
        parts, errors = [], {message.split(": ")[0]: message for message in unreadable}
        if loose_files:
            scored = score_sources(detector, loose_files, [str(path) for path in loose_files])
            parts.append(scored.table)
            errors.update(scored.errors)
        for dataset in datasets:
            samples = dataset.test or dataset.samples
            scored = score_samples(detector, dataset, samples)
            parts.append(scored.table)
            errors.update(scored.errors)
    finally:
        for dataset in datasets:
            dataset.close()
    for message in errors.values():
        print(f"warning: skipped {message}", file=sys.stderr)
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if table.empty:
        raise InputError("none of the given images could be read.")
    if threshold is not None:
        column = threshold["score_column"]
        if column == "patch_score":
            raise InputError(f"{arguments.threshold_file}: this threshold is on the memory bank's patch_score, "
                             "which 'score' does not compute; judge these images on the dashboard's Inspect page.")
        if column not in table.columns:
            raise InputError(f"{arguments.threshold_file}: unknown score column {column!r}.")
        band = threshold.get("review_band") or {}
        table["verdict"] = verdicts_at(table[column], threshold["threshold"], band.get("review_from"))
    atomic_write_text(arguments.out, scores_csv(table))
    print(f"scored {len(table)} images into {arguments.out}", file=sys.stderr)
    return EXIT_OK


def _has_layout(path: Path) -> bool:
    return any((path / name).is_dir() for name in ("train", "test", "good"))


def _evaluate(arguments) -> int:
    from core.bundles import read_manifest
    from core.datasets import open_dataset

    read_manifest(arguments.run)
    with open_dataset(arguments.data) as dataset:
        from core.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        from core.bundles import load_bundle
        from core.pipeline import evaluate

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
    from core.datasets import open_dataset

    if not 0.01 <= arguments.coreset_ratio <= 0.25:
        raise InputError("--coreset-ratio must be between 0.01 and 0.25.")
    with open_dataset(arguments.data) as dataset:
        from core.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        from core.compare import compare_detectors, comparison_rows
        from core.models import build_autoencoder

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


def _fmt(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}" if digits > 4 else f"{value:.4f}"


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
