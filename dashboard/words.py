"""Plain words for every score and preset, in one place, so every page explains them the same way; and the
ways a name from a data set is written into the page as text, never as markup."""

import decimal
import html
import math

SCORE_MEANINGS = {
    "mean": "average size of the reconstruction error over the image (|x − x̂|)",
    "std": "how much the error varies across the image",
    "var": "the square of std",
    "kurtosis": "how concentrated the error is in a few pixels; describes shape, not size",
    "skewness": "how lopsided the error's distribution is; describes shape, not size",
    "range": "largest error minus smallest error",
    "min": "smallest error of any pixel",
    "max": "largest error of any single pixel",
    "cumsum": "total error summed over all pixels (grows with image size)",
    "entropy": "how spread out the error values are (in bits)",
    "mse": "mean squared error over the image",
    "stat_distance": "how far the image's error statistics lie above those of good parts (fused; not a default)",
    "map_max": "peak of the lightly smoothed error map: the worst spot in the image",
    "patch_score": "how far the most unusual patch lies from its nearest good patch, in units of what good "
                   "images show there (memory bank)",
    "padim_score": "how unusual the most unusual patch is for its position in the image (Mahalanobis distance "
                   "to the good images' patches there; PaDiM)",
    "lattice_score": "where the image disagrees most with itself shifted by one period of its pattern, in units "
                     "of what good images show there (lattice)",
}

PRESET_MEANINGS = {
    "Run default": "the threshold stored with the run: at most 1 % false rejects on held-out good images",
    "Best F1": "the threshold with the best balance of precision and recall on these test images",
    "Youden's J": "the threshold that maximises recall minus the false-reject rate on these test images",
    "Zero escape": "the highest threshold that still rejects every known defect",
}


def meaning(column: str) -> str:
    return SCORE_MEANINGS.get(column, "")


def with_dashes(frame, formats: dict[str, str]):
    """A copy of ``frame`` where each column of ``formats`` that has a missing value is written out as
    text, "—" for the missing ones. Streamlit's grid shows a missing number as "None" whatever a
    styler's ``na_rep`` says; columns without gaps stay numbers (they sort as numbers)."""
    import pandas as pd

    frame = frame.copy()
    for label, form in formats.items():
        if label in frame and frame[label].isna().any():
            frame[label] = [form.format(value) if pd.notna(value) else "—" for value in frame[label]]
    return frame


def as_code(text: str) -> str:
    """``text`` as inline code in Markdown; a backtick in a file name would end the span, so it becomes '.

    Inside a code span Markdown reads nothing (no links, no emphasis, no HTML): the safe way to show a name."""
    return "`" + " ".join(str(text).replace("`", "'").split()) + "`"


# Markdown's punctuation, every one of which a name may carry: escaped, each reads as itself
_MARKDOWN_SPECIAL = set("\\`*_{}[]()<>#+-.!|~$&:\"'=")


def as_text(text) -> str:
    """Any name (file, folder, run, defect type, reason) as literal text inside Streamlit Markdown: every
    punctuation mark escaped, so a name like ``[x](javascript:..)`` or ``<img ...>`` reads as itself and
    never becomes a link, a picture, emphasis or markup; line breaks become spaces."""
    return "".join("\\" + character if character in _MARKDOWN_SPECIAL else character
                   for character in " ".join(str(text).split()))


def as_plot_text(text) -> str:
    """A name as a Plotly label (legend, hover, title): Plotly reads a few HTML tags (``<a href>``, ``<b>``,
    ``<br>``) in labels, so ``<``, ``>`` and ``&`` are written as entities, which it shows as themselves."""
    return html.escape(str(text), quote=False)


def percent(value) -> str:
    """A share as a percentage with one decimal, "—" when there is none (no images of that kind).

    Halves are rounded up on the exact value of ``100 × value``, as the live component's JavaScript
    (``toFixed``) does, so a rate reads the same on a card and in a caption."""
    if value is None or not math.isfinite(value):
        return "—"
    tenths = decimal.Decimal(100 * float(value)).quantize(decimal.Decimal("0.1"), rounding=decimal.ROUND_HALF_UP)
    return f"{tenths} %"


def significant(value, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (a threshold of 2e-05 does not read "0.000")."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{float(value):.{digits}g}"
