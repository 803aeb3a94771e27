"""Plain words for every score and preset, in one place, so every page explains them the same way."""

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
    """``text`` as inline code in Markdown; a backtick in a file name would end the span, so it becomes '."""
    return "`" + str(text).replace("`", "'") + "`"
