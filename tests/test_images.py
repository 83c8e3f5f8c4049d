"""The decoder: every mode to RGB, EXIF orientation, reduced decoding, bytes and files alike, one-line errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cityseg.errors import CitysegError
from cityseg.images import (
    CorruptImageError,
    DecodeError,
    EmptyImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
    UnreadableFileError,
    decode_image,
    decode_raw,
    expand_inputs,
    is_image_name,
)


def gradient(height: int = 40, width: int = 60) -> np.ndarray:
    """An (H, W, 3) uint8 photo whose every pixel differs from its neighbours: orientation shows."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (3 * x + 5 * y) % 256], axis=-1).astype(np.uint8)


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# ---- modes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("RGB", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"), ("1", "PNG")],
)
def test_every_mode_becomes_rgb_at_its_own_size(tmp_path, mode, fmt):
    photo = Image.fromarray(gradient()).convert(mode)
    path = tmp_path / f"photo.{fmt.lower()}"
    photo.save(path, format=fmt)
    for source in (path, path.read_bytes(), photo):
        decoded = decode_image(source)
        assert decoded.image.mode == "RGB" and decoded.size == (40, 60) and decoded.full_size
    if mode in ("RGB", "L", "P", "RGBA"):  # lossless: the pixels are PIL's own conversion of them
        np.testing.assert_array_equal(np.asarray(decode_image(path).image), np.asarray(photo.convert("RGB")))


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    values = (np.arange(40 * 60).reshape(40, 60) * 20).astype(np.uint16)  # 0..47980
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    pixels = np.asarray(decode_image(path).image)
    assert pixels.shape == (40, 60, 3) and (pixels[..., 0] == pixels[..., 2]).all()
    assert pixels.max() == round(47980 / 257)  # 187: the 16-bit range onto 0..255, not clipped at 255


@pytest.mark.parametrize("mode", ["I", "F"])
def test_32_bit_and_float_grayscale_are_stretched_to_8_bits(mode):
    values = np.linspace(-1000, 5000, 40 * 60).reshape(40, 60).astype(np.int32 if mode == "I" else np.float32)
    pixels = np.asarray(decode_image(Image.fromarray(values)).image)
    assert pixels.min() == 0 and pixels.max() == 255 and (np.diff(pixels[..., 0].ravel().astype(int)) >= 0).all()


@pytest.mark.parametrize("shape", [(30, 50, 3), (30, 50), (30, 50, 1), (30, 50, 4)])
def test_arrays_of_every_layout(shape):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    photo = decode_image(array)
    assert photo.image.mode == "RGB" and photo.size == (30, 50)
    if shape == (30, 50, 3):
        np.testing.assert_array_equal(np.asarray(photo.image), array)


def test_arrays_that_are_not_uint8_images_are_refused_with_advice():
    with pytest.raises(CitysegError, match="uint8"):
        decode_image(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(CitysegError, match="RGB"):
        decode_image(np.zeros((8, 8, 2), dtype=np.uint8))


# ---- orientation --------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_upright_photo(orientation):
    from PIL import ImageOps

    stored = Image.fromarray(gradient())
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(stored, "PNG", exif=exif)  # lossless, so the pixels can be compared
    photo = decode_image(data)
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert photo.size == (expected.height, expected.width) == ((60, 40) if orientation >= 5 else (40, 60))
    np.testing.assert_array_equal(np.asarray(photo.image), np.asarray(expected.convert("RGB")))
    assert np.array_equal(np.asarray(photo.image), gradient()) == (orientation == 1)  # turned unless upright


def test_raw_decoding_keeps_the_stored_mode_and_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(Image.fromarray(gradient()).convert("L"), "PNG", exif=exif)
    with decode_raw(data) as image:
        assert image.mode == "L" and image.size == (60, 40)


# ---- reduced decoding ---------------------------------------------------------------------------


def test_large_jpeg_is_decoded_at_a_reduced_scale_but_keeps_its_size(tmp_path):
    path = tmp_path / "large.jpg"
    Image.fromarray(gradient(100, 100)).resize((2400, 1600)).save(path, quality=85)
    photo = decode_image(path, target_size=(64, 64))
    assert photo.size == (1600, 2400) and not photo.full_size
    assert 128 <= photo.image.height <= 400 and 128 <= photo.image.width <= 600  # draft 1/8, at least 2x target


def test_rotated_large_jpeg_is_reduced_and_upright(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(gradient(100, 100)).resize((2400, 1600)).save(path, quality=85, exif=exif)
    photo = decode_image(path, target_size=(64, 64))
    assert photo.size == (2400, 1600)  # upright: taller than wide
    assert photo.image.height > photo.image.width and min(photo.image.size) >= 128


def test_large_png_is_reduced_by_a_whole_factor(tmp_path):
    path = tmp_path / "large.png"
    Image.fromarray(gradient(1200, 1000)).save(path, compress_level=1)
    photo = decode_image(path, target_size=(64, 64))
    assert photo.size == (1200, 1000)
    assert photo.image.size == (143, 172)  # factor min(1000 // 128, 1200 // 128) = 7, edges rounded up
    assert decode_image(path).full_size  # no target: full size


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.fromarray(gradient(100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # a bomb is over twice this
    with pytest.raises(ImageTooLargeError, match="too large to decode safely") as error:
        decode_image(path)
    assert str(path) in str(error.value) and error.value.size is None


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_header_claiming_more_pixels_than_the_file_can_hold_is_refused_before_decoding(fmt):
    """Found by fuzzing: a mutated header made PIL take a large image's memory for a file of a few hundred bytes."""
    import resource
    import struct
    import zlib

    data = bytearray(encoded(Image.new("L", (8, 8)), fmt))
    if fmt == "PNG":  # IHDR's width and height at bytes 16..24, then its CRC made right again
        data[16:24] = struct.pack(">II", 7000, 7000)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    else:  # the SOF0 frame header: height and width after the marker, length and precision
        at = data.index(b"\xff\xc0") + 5
        data[at : at + 4] = struct.pack(">HH", 7000, 7000)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(TruncatedImageError, match="7000x7000 pixels but holds only") as error:
        decode_raw(bytes(data), name="tiny.png")
    assert error.value.reason == "too few bytes for its size" and "tiny.png" in str(error.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 20_000  # KiB: the 49 MB image was never made


def test_pixel_limits_refuse_from_the_header(tmp_path):
    data = encoded(Image.fromarray(gradient(40, 300)))
    with pytest.raises(ImageTooLargeError) as error:
        decode_image(data, max_side=200, name="the upload")
    assert error.value.size == (300, 40) and "300x40" in str(error.value)
    with pytest.raises(ImageTooLargeError):
        decode_image(data, max_pixels=40 * 299)
    assert decode_image(data, max_pixels=40 * 300, max_side=300).size == (40, 300)


def test_formats_restrict_what_may_be_decoded():
    data = encoded(Image.fromarray(gradient()), "BMP")
    with pytest.raises(NotAnImageError):
        decode_image(data, formats=("JPEG", "PNG"))
    assert decode_image(data, formats=("BMP",)).size == (40, 60)


# ---- errors --------------------------------------------------------------------------------------


def _cut_jpeg(path: Path) -> None:
    data = encoded(Image.fromarray(gradient(256, 256)), "JPEG")
    path.write_bytes(data[: len(data) // 2])


def _cut_png(path: Path) -> None:
    data = encoded(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    path.write_bytes(data[: len(data) // 2])


def _folder(path: Path) -> None:
    path.mkdir()  # a folder named like an image: found, not empty, and no image can be opened from it


BAD = {
    "empty": (lambda path: path.write_bytes(b""), EmptyImageError, "is empty"),
    "text": (lambda path: path.write_bytes(b"this is not an image at all"), NotAnImageError, "not an image"),
    "cut jpeg": (_cut_jpeg, TruncatedImageError, "corrupt or truncated"),
    "cut png": (_cut_png, TruncatedImageError, "corrupt or truncated"),
    "folder": (_folder, CorruptImageError, "cannot open"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, kind):
    write, error_type, message = BAD[kind]
    path = tmp_path / "bad.jpg"
    write(path)
    with pytest.raises(error_type, match=message) as error:
        decode_image(path, target_size=(64, 64))
    text = str(error.value)
    assert str(path) in text and "\n" not in text and "replace or remove it" in text
    assert error.value.source == str(path) and isinstance(error.value, CitysegError)
    with pytest.raises(error_type):
        decode_raw(path)
    if path.is_file():
        with pytest.raises(error_type, match=r"^the upload"):  # the same bytes, uploaded
            decode_image(path.read_bytes(), name="the upload")


def test_missing_file_says_check_the_path(tmp_path):
    with pytest.raises(UnreadableFileError, match=r"cannot read .*gone\.jpg.*check the path") as error:
        decode_image(tmp_path / "gone.jpg")
    assert isinstance(error.value, DecodeError) and error.value.reason


# ---- finding images ------------------------------------------------------------------------------


def test_image_names_leave_out_hidden_and_truth_files():
    assert is_image_name("a/10.JPG") and is_image_name("x.tiff") and is_image_name("2.webp")
    assert not is_image_name("7_labelIds.png") and not is_image_name(".hidden.jpg") and not is_image_name("a.txt")


def test_expand_inputs_takes_files_folders_and_globs_without_duplicates(tmp_path):
    for name in ("10.jpg", "2.jpg", "notes.txt", "3_labelIds.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "2.jpg").write_bytes(b"x")
    found = expand_inputs([tmp_path, str(tmp_path / "*.jpg"), tmp_path / "sub" / "2.jpg"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["2.jpg", "10.jpg", "sub/2.jpg"]
    with pytest.raises(CitysegError, match="does not exist"):
        expand_inputs([tmp_path / "missing.jpg"])
    with pytest.raises(CitysegError, match="no images match"):
        expand_inputs([str(tmp_path / "*.png")])
    (tmp_path / "none").mkdir()
    with pytest.raises(CitysegError, match="no images"):
        expand_inputs([tmp_path / "none"])
    with pytest.raises(CitysegError, match="no input images"):
        expand_inputs([])
