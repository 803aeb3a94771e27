import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.errors import ImageDecodeError
from core.data.images import MAX_IMAGE_PIXELS, decode_image, decode_many


def _encoded(array, fmt, mode="L"):
    buffer = io.BytesIO()
    Image.fromarray(array if mode != "I;16" else array.astype(np.uint16)).save(buffer, format=fmt)
    return buffer.getvalue()


def header_only_png(width, height):
    """A PNG that declares width×height pixels but carries almost no data (a decompression bomb header)."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF"])
def test_every_accepted_format_decodes_to_resized_grayscale(tmp_path, fmt):
    gradient = np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (60, 1))
    path = tmp_path / "part.img"
    path.write_bytes(_encoded(gradient, fmt))
    image = decode_image(path, 32)
    assert image.shape == (32, 32) and image.dtype == np.float32
    assert 0.0 <= image.min() < 0.1 and 0.9 < image.max() <= 1.0
    assert image[:, -1].mean() > image[:, 0].mean() + 0.7  # the gradient survives the resize


def test_format_is_read_from_content_not_name(tmp_path):
    path = tmp_path / "actually_a_jpeg.png"
    path.write_bytes(_encoded(np.full((20, 20), 200, np.uint8), "JPEG"))
    assert decode_image(path, 8).mean() == pytest.approx(200 / 255, abs=0.02)


def test_colour_is_converted_with_luma_weights(tmp_path):
    red = np.zeros((10, 10, 3), np.uint8)
    red[..., 0] = 255
    path = tmp_path / "red.png"
    path.write_bytes(_encoded(red, "PNG", mode="RGB"))
    assert decode_image(path).mean() == pytest.approx(76 / 255, abs=0.01)  # 0.299 × 255


def test_sixteen_bit_png_is_scaled_to_unit_range(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(path)
    assert decode_image(path).max() == pytest.approx(1.0)


@pytest.mark.parametrize("payload, expected", [
    (b"this is a text file, not a picture\n", "not a PNG, JPEG, BMP or TIFF"),
    (header_only_png(20000, 20000), "pixels"),
])
def test_unreadable_images_raise_one_clear_error_naming_the_file(tmp_path, payload, expected):
    path = tmp_path / "bad.png"
    path.write_bytes(payload)
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(path, 16)
    assert "bad.png" in str(caught.value) and expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_truncated_png_is_reported_as_corrupt(tmp_path):
    good = _encoded(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8), "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageDecodeError, match="cut.png: image data is corrupt or truncated"):
        decode_image(path, 16)


def test_pixel_cap_is_well_below_pillows_own_limit():
    assert MAX_IMAGE_PIXELS * 2 <= Image.MAX_IMAGE_PIXELS


def test_one_bad_file_does_not_stop_the_others(tmp_path):
    paths = []
    for name, payload in [("a.png", _encoded(np.zeros((8, 8), np.uint8), "PNG")), ("b.png", b"garbage"),
                          ("c.bmp", _encoded(np.full((8, 8), 255, np.uint8), "BMP"))]:
        (tmp_path / name).write_bytes(payload)
        paths.append(tmp_path / name)
    batch = decode_many(paths, 8, names=["a.png", "b.png", "c.bmp"])
    assert batch.kept == [0, 2] and batch.images.shape == (2, 8, 8)
    assert list(batch.errors) == [1] and batch.errors[1].startswith("b.png:")


def _tiff(array, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="TIFF")
    return buffer.getvalue()


def test_float_images_in_0_1_are_taken_as_they_are():
    assert decode_image(_tiff(np.full((8, 8), 0.4, np.float32))).mean() == pytest.approx(0.4, abs=1e-6)


@pytest.mark.parametrize("value, fragment", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"),
                                             (3.5, r"outside \[0, 1\]"), (-0.5, r"outside \[0, 1\]")])
def test_float_images_that_are_not_in_0_1_are_refused(value, fragment):
    with pytest.raises(ImageDecodeError, match=fragment):
        decode_image(_tiff(np.full((8, 8), value, np.float32)), name="frame.tif")


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_frames_always_scale_by_65535(fmt):
    bright = np.full((8, 8), 25000, np.uint16)
    dim = bright.copy()
    dim[:] = 200   # a dark 16-bit frame: all values fit in 8 bits, but it is still 16-bit
    assert decode_image(_encoded(bright, fmt, "I;16")).mean() == pytest.approx(25000 / 65535, rel=1e-4)
    assert decode_image(_encoded(dim, fmt, "I;16")).mean() == pytest.approx(200 / 65535, rel=1e-3)
    nearly = bright.copy()
    nearly[0, 0] = 200  # two near-identical frames decode alike
    assert decode_image(_encoded(nearly, fmt, "I;16")).mean() == pytest.approx(
        decode_image(_encoded(bright, fmt, "I;16")).mean(), abs=0.01)


def test_other_pixel_types_are_refused_in_one_sentence():
    with pytest.raises(ImageDecodeError, match="32-bit integer"):
        decode_image(_tiff(np.full((8, 8), 7, np.int32)), name="odd.tif")


def test_exif_orientation_is_applied():
    wide = np.zeros((20, 40), np.uint8)
    wide[:, :10] = 255   # bright band on the left
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6     # "rotate 90° clockwise to display"
    Image.fromarray(wide).save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    from core.data.images import decode_frame

    image, size = decode_frame(buffer.getvalue())
    assert size == (20, 40)                       # upright: portrait
    assert image[:10].mean() > 0.8 and image[-10:].mean() < 0.2   # the band is now on top
