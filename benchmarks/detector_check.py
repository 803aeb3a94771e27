"""How far the detector check (``python -m core advise``) can be trusted: its ranking against real defects.

On each labelled set the project has (the three generated sets, the four ``gimp-data`` photographs of
:mod:`benchmarks.real_photos`, the ELPV monocrystalline solar cells of :mod:`benchmarks.industrial`), the check
is run as a user would run it, on the set's **good training images only** (seed 0). Each detector it fits is
then also judged on the set's real test images (good and real or pasted defects), so the two rankings compare
the very same fitted detectors. Per set: the Spearman rank correlation between the check's AUROC and the real
AUROC, and whether the check's first choice is within 0.02 of the best real AUROC.

The real AUROC here comes from detectors trained on 70 % of the good training images (the check holds out
the rest), so it is a little below the README's tables, which train on all of them.

    python -m benchmarks.detector_check [--out benchmarks/recorded/detector_check.json]
    python -m benchmarks.detector_check --detectors ncae_features   # measure these again, keep the others' rows
    python -m benchmarks.detector_check --table    # the README's table, from the recorded file
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from core.quiet import import_tensorflow_quietly

RECORDED = Path(__file__).resolve().parent / "recorded" / "detector_check.json"
WITHIN = 0.02


def set_agreement(rows: list[dict]) -> dict:
    """The check's ranking against the real one on one set's fitted detectors."""
    from scipy.stats import spearmanr

    fitted = [row for row in rows if "check_auroc" in row]
    check = np.array([row["check_auroc"] for row in fitted])
    real = np.array([row["real_auroc"] for row in fitted])
    pick = fitted[int(np.argmax(check))]
    return {"rank_correlation": round(float(spearmanr(check, real).statistic), 4),
            "pick": pick["detector"], "pick_real_auroc": pick["real_auroc"],
            "best": fitted[int(np.argmax(real))]["detector"], "best_real_auroc": float(real.max()),
            "pick_within_0.02": bool(pick["real_auroc"] >= real.max() - WITHIN)}


def agreement(recorded: dict) -> dict:
    """The figures :data:`core.evaluation.detector_check.AGREEMENT` shows, from the recorded sets."""
    sets = [entry["agreement"] for entry in recorded["sets"].values()]
    return {"sets": len(sets), "top_pick_within_0.02": sum(entry["pick_within_0.02"] for entry in sets),
            "mean_rank_correlation": round(float(np.mean([entry["rank_correlation"] for entry in sets])), 2)}


def markdown_table(recorded: dict) -> str:
    from core.detectors import label

    lines = ["| set | the check's first choice (real AUROC) | best on real defects (real AUROC) | within 0.02 | "
             "rank correlation |", "|---|---|---|---|---|"]
    for name, entry in recorded["sets"].items():
        figures = entry["agreement"]
        shown = "solar cells (ELPV mono)" if name.startswith("elpv") else name.split(":")[-1]
        lines.append(f"| {shown} | {label(figures['pick'])} ({figures['pick_real_auroc']:.3f}) | "
                     f"{label(figures['best'])} ({figures['best_real_auroc']:.3f}) | "
                     f"{'yes' if figures['pick_within_0.02'] else 'no'} | {figures['rank_correlation']:.2f} |")
    total = recorded["agreement"]
    lines.append(f"| **{total['sets']} sets** | | | **{total['top_pick_within_0.02']} of {total['sets']}** | "
                 f"**{total['mean_rank_correlation']:.2f}** (mean) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RECORDED)
    parser.add_argument("--table", action="store_true", help="print the README's table from the recorded file")
    parser.add_argument("--detectors", nargs="+", help="measure only these again and keep the recorded file's other rows "
                        "(after a change to these detectors alone)")
    arguments = parser.parse_args()
    if arguments.table:
        print(markdown_table(json.loads(arguments.out.read_text())))
        return
    import_tensorflow_quietly()
    from benchmarks.feature_autoencoder_sweep import image_sets
    from core.data.datasets import open_dataset
    from core.evaluation.detector_check import CANDIDATE_NAMES, detector_check
    from core.evaluation.evaluate import evaluate_detector, load_test_images

    kept = json.loads(arguments.out.read_text())["sets"] if arguments.detectors else {}
    names = tuple(arguments.detectors or CANDIDATE_NAMES)
    result = {"command": "python -m benchmarks.detector_check", "sets": {}}
    with tempfile.TemporaryDirectory() as scratch:
        sets = image_sets(Path(scratch))
        # the real images first: the solar cells, then the photographs, then the generated sets
        for name in sorted(sets, key=lambda name: (not name.startswith("elpv"), not name.startswith("real"))):
            root = sets[name]
            with open_dataset(root) as dataset:
                def real(detector, dataset=dataset):
                    test = load_test_images(dataset, int(detector.input_size), detector.channels)
                    figures, _ = evaluate_detector(detector, test)
                    return {"real_auroc": round(figures["image_auroc"], 4)}

                report = detector_check(dataset, names, also=real,
                                        progress=lambda message: print(name, message, flush=True))
            rows = [row for row in kept.get(name, {}).get("rows", []) if row["detector"] not in names] + report["rows"]
            rows.sort(key=lambda row: -row.get("check_auroc", -1.0))
            entry = {"rows": rows, "agreement": set_agreement(rows)}
            result["sets"][name] = entry
            if arguments.detectors:   # the sets not yet measured again keep their recorded rows meanwhile
                result["sets"] = result["sets"] | {other: kept[other] for other in kept if other not in result["sets"]}
            print(json.dumps({"set": name} | entry["agreement"]), flush=True)
            # written after every set, so an interrupted run keeps the sets it measured
            result["agreement"] = agreement(result)
            arguments.out.parent.mkdir(parents=True, exist_ok=True)
            arguments.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["agreement"]))


if __name__ == "__main__":
    main()
