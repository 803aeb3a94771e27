"""Image sets made from real photographs the project did not make: GIMP's photographic texture patterns.

Debian's ``gimp-data`` package ships photographs of surfaces (brick, burlap, granite, walnut …) as
GIMP ``.pat`` files (``apt-get install gimp-data``). Each set here is built from one photograph:
the photograph is tiled into a large canvas, good "parts" are random crops of it, and defect parts
are crops with a defect pasted in and its pixel mask saved:

- ``hole``: a dark, soft-edged pit;
- ``scratch``: a thin bright or dark line a few pixels wide;
- ``foreign``: an irregular patch cut from another photograph.

The sets are written in the MVTec AD layout, so every command and page reads them like any other.
``python -m benchmarks.real_photos --out DIR`` writes them all.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PATTERNS = Path("/usr/share/gimp/2.0/patterns")
# one regular, one fibrous, one granular and one grained surface
REAL_SETS = {"brick": "Stone/brick.pat", "burlap": "Fabric/burlap.pat", "granite": "Stone/granite1.pat",
             "walnut": "Wood/walnut.pat"}
FOREIGN_SOURCE = "Stone/rock.pat"
CROP = 96
COUNTS = {"train_good": 60, "test_good": 20, "per_defect": 10}


class PatternsMissing(RuntimeError):
    """The GIMP patterns are not installed; the message says which package brings them."""


def read_gimp_pattern(path: Path) -> np.ndarray:
    """A GIMP ``.pat`` file as an RGB uint8 array (header: size, version, width, height, bytes, 'GPAT')."""
    data = path.read_bytes()
    header_size, _version, width, height, depth = struct.unpack(">5I", data[:20])
    if data[20:24] != b"GPAT" or depth not in (1, 2, 3, 4):
        raise ValueError(f"{path}: not a GIMP pattern file.")
    pixels = np.frombuffer(data[header_size:header_size + width * height * depth], dtype=np.uint8)
    pixels = pixels.reshape(height, width, depth)
    if depth in (1, 2):
        pixels = np.repeat(pixels[..., :1], 3, axis=2)
    return np.ascontiguousarray(pixels[..., :3])


def _pattern(name: str) -> np.ndarray:
    path = PATTERNS / name
    if not path.is_file():
        raise PatternsMissing(f"{path} is missing; install Debian's gimp-data package (apt-get install gimp-data).")
    return read_gimp_pattern(path)


def _crop(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    top, left = rng.integers(0, canvas.shape[0] - CROP), rng.integers(0, canvas.shape[1] - CROP)
    return canvas[top:top + CROP, left:left + CROP].copy()


def _blob_mask(rng: np.random.Generator, radius: float) -> Image.Image:
    mask = Image.new("L", (CROP, CROP), 0)
    centre = rng.uniform(radius + 4, CROP - radius - 4, 2)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
    radii = radius * rng.uniform(0.6, 1.3, 9)
    points = [(float(centre[0] + r * np.cos(a)), float(centre[1] + r * np.sin(a))) for a, r in zip(angles, radii)]
    ImageDraw.Draw(mask).polygon(points, fill=255)
    return mask


def _paste_defect(image: np.ndarray, kind: str, rng: np.random.Generator, foreign: np.ndarray):
    picture = Image.fromarray(image)
    if kind == "hole":
        mask = _blob_mask(rng, rng.uniform(4, 8))
        darkness = Image.new("RGB", picture.size, tuple(int(v) for v in rng.integers(5, 30, 3)))
        picture.paste(darkness, mask=mask.filter(ImageFilter.GaussianBlur(1.2)))
    elif kind == "scratch":
        mask = Image.new("L", picture.size, 0)
        start = rng.uniform(10, CROP - 10, 2)
        angle, length = rng.uniform(0, np.pi), rng.uniform(30, 60)
        end = np.clip(start + length * np.array([np.cos(angle), np.sin(angle)]), 2, CROP - 2)
        ImageDraw.Draw(mask).line([tuple(start), tuple(end)], fill=255, width=int(rng.integers(2, 4)))
        shade = 235 if rng.random() < 0.5 else 20
        picture.paste(Image.new("RGB", picture.size, (shade, shade, shade)), mask=mask.filter(ImageFilter.GaussianBlur(0.6)))
    else:
        mask = _blob_mask(rng, rng.uniform(7, 12))
        picture.paste(Image.fromarray(_crop(foreign, rng)), mask=mask)
    return np.asarray(picture), np.asarray(mask) > 127


def write_real_set(out: Path, name: str, seed: int = 0, counts: dict | None = None, suffix: str = ".png") -> Path:
    """Write one real-photograph set in the MVTec layout (``counts`` as :data:`COUNTS`; images as ``suffix``,
    masks always PNG); returns its folder."""
    counts = counts or COUNTS
    rng = np.random.default_rng(seed)
    photograph = _pattern(REAL_SETS[name])
    repeats = (int(np.ceil(4 * CROP / photograph.shape[0])), int(np.ceil(4 * CROP / photograph.shape[1])), 1)
    canvas = np.tile(photograph, repeats)
    foreign = np.tile(_pattern(FOREIGN_SOURCE), (4, 4, 1))
    root = Path(out) / name
    for split, folder, count in (("train", "good", counts["train_good"]), ("test", "good", counts["test_good"])):
        (root / split / folder).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            Image.fromarray(_crop(canvas, rng)).save(root / split / folder / f"{index:03d}{suffix}")
    for kind in ("hole", "scratch", "foreign"):
        (root / "test" / kind).mkdir(parents=True, exist_ok=True)
        (root / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
        for index in range(counts["per_defect"]):
            image, mask = _paste_defect(_crop(canvas, rng), kind, rng, foreign)
            Image.fromarray(image).save(root / "test" / kind / f"{index:03d}{suffix}")
            Image.fromarray((mask * 255).astype(np.uint8)).save(root / "ground_truth" / kind / f"{index:03d}_mask.png")
    return root


def write_real_sets(out: Path, seed: int = 0) -> dict[str, Path]:
    return {name: write_real_set(out, name, seed) for name in REAL_SETS}


GENERATED = ("casting", "texture", "object")


def every_image_set(out: Path) -> dict[str, Path]:
    """The three generated sets and the four real-photograph ones (``real:NAME``), written under ``out``."""
    from core.data.synthetic import generate_demo_set

    sets = {name: generate_demo_set(Path(out) / name, seed=0, style=name) for name in GENERATED}
    return sets | {f"real:{name}": write_real_set(Path(out) / "real", name) for name in REAL_SETS}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args()
    for name, folder in write_real_sets(arguments.out).items():
        print(name, folder)
