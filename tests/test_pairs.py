"""Reading paired datasets: discovery in every layout, natural order, halves, and every kind of bad file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cityseg.errors import CitysegError
from cityseg.pairs import discover, is_pair_image, read_pair, read_photo

PHOTO_COLOUR = (200, 30, 30)
MASK_COLOUR = (128, 64, 128)  # road


def write_pair(path: Path, size: int = 16, fmt: str = "PNG") -> Path:
    """A pair image: a flat photo on the left, a flat road mask on the right."""
    pixels = np.zeros((size, 2 * size, 3), dtype=np.uint8)
    pixels[:, :size] = PHOTO_COLOUR
    pixels[:, size:] = MASK_COLOUR
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def jpeg_bytes(size: int = 16) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, 2 * size, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


# ---- discovery ------------------------------------------------------------------------------------


def test_natural_order_and_ignored_files(tmp_path):
    for name in ("10.jpg", "2.jpg", "1.jpg", "11.jpg"):
        write_pair(tmp_path / name, fmt="JPEG")
    (tmp_path / "2_labelIds.png").write_bytes(b"exact ids written by cityseg synth")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.jpg").write_bytes(b"")
    (tmp_path / "sub").mkdir()

    found = discover(tmp_path)

    assert list(found) == ["all"]
    assert [p.name for p in found["all"]] == ["1.jpg", "2.jpg", "10.jpg", "11.jpg"]
    assert not is_pair_image("7_labelIds.png") and is_pair_image("7.JPG")


@pytest.mark.parametrize("layout", ["cityscapes_data", "cityscapes", ""])
def test_split_layouts(tmp_path, layout):
    base = tmp_path / layout if layout else tmp_path
    for split, names in {"train": ["3.jpg", "1.jpg"], "val": ["20.jpg"]}.items():
        for name in names:
            write_pair(base / split / name, fmt="JPEG")

    found = discover(tmp_path)

    assert {k: [p.name for p in v] for k, v in found.items()} == {"train": ["1.jpg", "3.jpg"], "val": ["20.jpg"]}
    assert list(discover(tmp_path, split="val")) == ["val"]


def test_missing_split_is_an_error(tmp_path):
    write_pair(tmp_path / "train" / "1.jpg", fmt="JPEG")
    with pytest.raises(CitysegError, match="no 'val' images"):
        discover(tmp_path, split="val")


def test_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(CitysegError) as error:
        discover(tmp_path)
    assert str(tmp_path) in str(error.value) and "no pair images" in str(error.value)


def test_empty_split_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(CitysegError, match="no pair images"):
        discover(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(CitysegError) as error:
        discover(tmp_path / "nowhere")
    assert "nowhere" in str(error.value) and "does not exist" in str(error.value)


# ---- reading pairs --------------------------------------------------------------------------------


def test_read_pair_splits_halves(tmp_path):
    path = write_pair(tmp_path / "1.png", size=12)

    photo, mask = read_pair(path)

    assert photo.shape == mask.shape == (12, 12, 3) and photo.dtype == mask.dtype == np.uint8
    assert (photo == PHOTO_COLOUR).all() and (mask == MASK_COLOUR).all()


def test_mask_side_left(tmp_path):
    path = write_pair(tmp_path / "1.png")
    photo, mask = read_pair(path, mask_side="left")
    assert (photo == MASK_COLOUR).all() and (mask == PHOTO_COLOUR).all()
    with pytest.raises(CitysegError, match="mask_side"):
        read_pair(path, mask_side="top")


def write_corrupt(path):
    data = bytearray(jpeg_bytes())
    data[2:40] = bytes(38)  # the JPEG markers after the start-of-image are destroyed
    path.write_bytes(bytes(data))


def write_truncated(path):
    data = jpeg_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_zero_bytes(path):
    path.write_bytes(b"")


def write_not_an_image(path):
    path.write_text("id,name\n1,road\n")


def write_wrong_aspect(path):
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(path, format="JPEG")


def write_grayscale(path):
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(path, format="JPEG")


def write_rgba(path):
    Image.fromarray(np.zeros((16, 32, 4), np.uint8)).save(path, format="PNG")


def write_cmyk(path):
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).convert("CMYK").save(path, format="JPEG")


BAD_FILES = {
    "corrupt": (write_corrupt, "not an image"),
    "truncated": (write_truncated, "truncated"),
    "zero-byte": (write_zero_bytes, "empty"),
    "not-an-image": (write_not_an_image, "not an image"),
    "wrong-aspect": (write_wrong_aspect, "twice as wide"),
    "grayscale": (write_grayscale, "grayscale"),
    "rgba": (write_rgba, "RGBA"),
    "cmyk": (write_cmyk, "CMYK"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_pair_files(tmp_path, kind):
    write, expected = BAD_FILES[kind]
    path = tmp_path / f"{kind}.jpg"
    write(path)

    with pytest.raises(CitysegError) as error:
        read_pair(path)

    message = str(error.value)
    assert str(path) in message and expected in message
    assert "\n" not in message and ("replace" in message or "re-save" in message or "crop" in message)


@pytest.mark.parametrize("kind", ["grayscale", "rgba", "cmyk", "wrong-aspect"])
def test_read_photo_converts_any_colour_image(tmp_path, kind):
    path = tmp_path / f"{kind}.img"
    BAD_FILES[kind][0](path)
    photo = read_photo(path)
    assert photo.ndim == 3 and photo.shape[2] == 3 and photo.dtype == np.uint8


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "zero-byte", "not-an-image"])
def test_read_photo_rejects_unreadable_files(tmp_path, kind):
    path = tmp_path / f"{kind}.jpg"
    BAD_FILES[kind][0](path)
    with pytest.raises(CitysegError) as error:
        read_photo(path)
    assert str(path) in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(CitysegError, match="cannot read"):
        read_pair(tmp_path / "gone.jpg")
