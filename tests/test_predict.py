"""Prediction: any photo, any size, back at its own size; files, folders, globs; clear errors for bad input."""

from __future__ import annotations

import os
import resource
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cityseg.classes import class_set
from cityseg.cli import main
from cityseg.engine import PredictOptions, Segmenter, StageTimes, preprocess
from cityseg.errors import CitysegError
from cityseg.models import ModelInfo
from cityseg.outputs import ids_encoder, output_stems
from cityseg.predict import predict_files

torch.set_num_threads(1)
SIZE = (64, 64)  # the tiny model's input


def street(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like (H, W, 3) uint8 image: smooth gradients and a few blocks, not pure noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // max(width, 1), y * 255 // max(height, 1), (x + y) % 256], axis=-1)
    for _ in range(3):
        top, left = rng.integers(0, max(height, 1)), rng.integers(0, max(width, 1))
        image[top : top + height // 4, left : left + width // 4] = rng.integers(0, 256, 3)
    return image.astype(np.uint8)


# ---- the Python API ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(37, 53, 3), (1, 1, 3), (64, 200, 3), (300, 90, 3), (40, 50), (40, 50, 4)])
def test_predict_returns_class_ids_at_the_original_size(tiny_segmenter, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    classes = tiny_segmenter.predict(image)
    assert classes.shape == shape[:2]
    assert classes.dtype == np.uint8
    assert classes.max() < tiny_segmenter.info.num_classes


def test_predict_takes_paths_pil_images_and_arrays_alike(tiny_segmenter, tmp_path):
    photo = street(48, 80)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    from_array = tiny_segmenter.predict(photo)
    np.testing.assert_array_equal(tiny_segmenter.predict(tmp_path / "photo.png"), from_array)
    np.testing.assert_array_equal(tiny_segmenter.predict(Image.fromarray(photo)), from_array)
    np.testing.assert_array_equal(tiny_segmenter.predict_batch([photo, photo])[1], from_array)


def test_prediction_is_the_upsampled_argmax_of_the_model_logits(tiny_segmenter, tiny_model_dir):
    from cityseg.models import load_model

    photo = street(50, 70)
    net, info = load_model(tiny_model_dir)
    with torch.no_grad():
        logits = net(torch.from_numpy(preprocess(photo, info))[None])  # (1, C, 64, 64)
    expected = F.interpolate(logits, size=(50, 70), mode="bilinear", align_corners=False)[0].argmax(0).numpy()
    np.testing.assert_array_equal(tiny_segmenter.predict(photo), expected)


def test_preprocess_resizes_and_normalises_like_training(tiny_segmenter):
    info = tiny_segmenter.info
    photo = np.full((30, 90, 3), (255, 128, 0), dtype=np.uint8)
    image = preprocess(photo, info)
    assert image.shape == (3, *SIZE) and image.dtype == np.float32
    expected = (np.array([255, 128, 0]) / 255 - np.array(info.mean)) / np.array(info.std)
    np.testing.assert_allclose(image[:, 10, 10], expected, atol=1e-5)


def test_non_uint8_arrays_are_refused_with_advice(tiny_segmenter):
    with pytest.raises(CitysegError, match="uint8"):
        tiny_segmenter.predict(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(CitysegError, match="RGB"):
        tiny_segmenter.predict(np.zeros((8, 8, 2), dtype=np.uint8))


# ---- reading images ---------------------------------------------------------------------------


def test_grayscale_rgba_and_palette_files_are_segmented(tiny_segmenter, tmp_path):
    photo = Image.fromarray(street(40, 60))
    for mode in ("L", "RGBA", "P", "CMYK"):
        path = tmp_path / f"{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
        photo.convert(mode).save(path)
        assert tiny_segmenter.predict(path).shape == (40, 60)


def test_exif_rotated_photos_come_back_upright(tiny_segmenter, tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the upright photo is 40 wide and 60 tall
    Image.fromarray(street(40, 60)).save(path, exif=exif)
    assert tiny_segmenter.predict(path).shape == (60, 40)


@pytest.mark.slow
def test_8000x8000_jpeg_is_processed_without_a_full_size_float_tensor(tiny_segmenter, tmp_path):
    path = tmp_path / "huge.jpg"
    Image.fromarray(street(500, 500)).resize((8000, 8000), Image.Resampling.NEAREST).save(path, quality=80)
    photo = tiny_segmenter.open(path)
    assert photo.size == (8000, 8000)
    assert max(photo.image.size) <= 1000  # JPEG draft decoding at 1/8
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    summary = predict_files(tiny_segmenter, [path], tmp_path / "out", PredictOptions(progress=False))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    # a float (19, 8000, 8000) tensor alone would be 4.6 GiB; photo, colours and overlay at full size ~1 GiB
    assert grown_mib < 1500
    with Image.open(tmp_path / "out" / "huge_trainIds.png") as ids:
        assert ids.size == (8000, 8000)
    assert summary.images == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "not an image"),
        (None, "corrupt or truncated"),  # a JPEG cut in half
    ],
)
def test_unreadable_images_are_one_line_errors_naming_the_file(tiny_segmenter, tmp_path, content, message):
    path = tmp_path / "bad.jpg"
    if content is None:
        Image.fromarray(street(256, 256)).save(tmp_path / "good.jpg")
        content = (tmp_path / "good.jpg").read_bytes()
        content = content[: len(content) // 2]
    path.write_bytes(content)
    with pytest.raises(CitysegError, match=message) as info:
        tiny_segmenter.predict(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# ---- files, folders, globs, outputs -----------------------------------------------------------


def test_output_stems_are_distinct_for_same_named_files_in_other_folders(tmp_path):
    paths = [tmp_path / "2.jpg", tmp_path / "10.jpg", tmp_path / "b" / "2.jpg", tmp_path / "c" / "b" / "2.png"]
    assert output_stems(paths) == ["2", "10", "b_2", "b_2-2"]


def test_predict_photos_times_every_stage(tiny_segmenter):
    photos = [tiny_segmenter.open(street(40, 60)), tiny_segmenter.open(street(70, 30))]
    labels, times = tiny_segmenter.predict_photos(photos)
    assert [label.shape for label in labels] == [(40, 60), (70, 30)]
    assert times.preprocess_s > 0 and times.model_s > 0 and len(times.resize_s) == 2
    assert tiny_segmenter.predict_photos([]) == ([], StageTimes())


def test_cli_predict_writes_ids_colours_and_overlay_at_each_photo_size(tiny_model_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(street(48, 96)).save(photos / "wide.jpg")
    Image.fromarray(street(70, 30, seed=1)).save(photos / "tall.png")
    out = tmp_path / "out"
    code = main(["predict", str(tiny_model_dir), str(photos), "--out", str(out), "--batch-size", "2", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "median" in printed and "p90" in printed
    for stem, size in (("wide", (96, 48)), ("tall", (30, 70))):
        ids = np.asarray(Image.open(out / f"{stem}_trainIds.png"))
        colour = np.asarray(Image.open(out / f"{stem}_color.png").convert("RGB"))
        assert Image.open(out / f"{stem}_overlay.jpg").size == size
        assert ids.shape == size[::-1] and ids.max() < 19
        np.testing.assert_array_equal(colour, class_set("train19").colorize(ids))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left behind


def test_cli_predict_pairs_and_label_ids(tiny_model_dir, tmp_path):
    pair = np.concatenate([street(32, 32), np.zeros((32, 32, 3), np.uint8)], axis=1)
    Image.fromarray(pair).save(tmp_path / "pair.png")
    out = tmp_path / "out"
    assert (
        main(
            ["predict", str(tiny_model_dir), str(tmp_path / "*.png"), "--out", str(out), "--pairs", "--ids", "labelids"]
        )
        == 0
    )
    ids = np.asarray(Image.open(out / "pair_labelIds.png"))
    assert ids.shape == (32, 32)  # the photo half only
    assert set(np.unique(ids)) <= set(class_set("train19").class_to_id)


def test_skip_bad_keeps_going_and_lists_the_bad_file(tiny_segmenter, tmp_path):
    Image.fromarray(street(20, 20)).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    summary = predict_files(tiny_segmenter, [tmp_path], tmp_path / "out", PredictOptions(skip_bad=True, progress=False))
    assert summary.images == 1
    assert [source for source, _ in summary.skipped] == [str(tmp_path / "broken.png")]
    assert "broken.png" in str(summary)


def test_cli_reports_a_bad_image_on_one_line(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    assert main(["predict", str(tiny_model_dir), str(tmp_path / "bad.jpg"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert error.startswith("cityseg: error:") and "bad.jpg" in error and "not an image" in error


# ---- models: folders, runs, classes -----------------------------------------------------------


def test_model_can_be_a_run_folder_or_runs_latest(tiny_model_dir, tmp_path):
    run = tmp_path / "runs" / "20250101-000000"
    shutil.copytree(tiny_model_dir, run / "model")
    assert Segmenter.from_pretrained(run).model_dir == run / "model"
    (tmp_path / "runs" / "latest").symlink_to(run.name)
    loaded = Segmenter.from_pretrained(tmp_path / "runs" / "latest").model_dir
    assert loaded.resolve() == (run / "model").resolve()
    (tmp_path / "runs" / "latest").unlink()
    (tmp_path / "runs" / "latest").write_text(run.name + "\n")  # the fallback without symlinks
    assert Segmenter.from_pretrained(tmp_path / "runs" / "latest").model_dir == run / "model"
    with pytest.raises(CitysegError, match="not a model folder"):
        Segmenter.from_pretrained(tmp_path)


@pytest.mark.parametrize("damage", ["missing weights", "corrupt weights", "corrupt info", "missing info"])
def test_damaged_model_folders_are_clear_errors(tiny_model_dir, tmp_path, damage):
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    if damage == "missing weights":
        os.remove(broken / "model.safetensors")
    elif damage == "corrupt weights":
        (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    elif damage == "corrupt info":
        (broken / "cityseg.json").write_text("{not json")
    else:
        os.remove(broken / "cityseg.json")
    with pytest.raises(CitysegError) as info:
        Segmenter.from_pretrained(broken)
    assert "\n" not in str(info.value)


def test_onnx_backend_without_an_export_says_how_to_make_one(tiny_model_dir, tmp_path):
    with pytest.raises(CitysegError, match="cityseg export"):
        Segmenter.from_pretrained(tiny_model_dir, backend="onnx")
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(CitysegError, match="damaged"):
        Segmenter.from_pretrained(broken, backend="onnx")
    with pytest.raises(CitysegError, match="unknown backend"):
        Segmenter.from_pretrained(tiny_model_dir, backend="tensorrt")


def test_ids_the_model_cannot_give_are_refused():
    kmeans = ModelInfo(
        arch="unet",
        encoder="resnet18",
        class_set_name="kmeans",
        names=("road", "sky", "car"),
        colors=((128, 64, 128), (70, 130, 180), (0, 0, 142)),
        class_to_id=(7, 23, 26),
    )
    with pytest.raises(CitysegError, match="no official label ids"):
        ids_encoder(kmeans, "labelids")
    with pytest.raises(CitysegError, match="no Cityscapes train ids"):
        ids_encoder(kmeans, "trainids")
    assert ids_encoder(kmeans, "classes")[1] == "classIds"
    categories = ModelInfo.from_class_set("unet", "resnet18", class_set("categories"), SIZE)
    to_ids, suffix = ids_encoder(categories, "labelids")
    assert suffix == "labelIds" and to_ids(np.array([[0, 4]], np.uint8)).tolist() == [[7, 23]]  # flat, sky
    labelids = ModelInfo.from_class_set("unet", "resnet18", class_set("labelids"), SIZE)
    to_ids, suffix = ids_encoder(labelids, "trainids")
    assert to_ids(np.array([[7, 26, 0]], np.uint8)).tolist() == [[0, 13, 255]]  # road, car, unlabeled


def test_cli_refuses_labelids_for_a_kmeans_model_before_reading_images(tiny_model_dir, tmp_path, capsys):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    info_path = folder / "cityseg.json"
    import json

    values = json.loads(info_path.read_text())
    values["class_set"] = "kmeans"
    info_path.write_text(json.dumps(values))
    Image.fromarray(street(16, 16)).save(tmp_path / "a.png")
    assert (
        main(["predict", str(folder), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--ids", "labelids"]) == 2
    )
    assert "no official label ids" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---- flip test-time augmentation -------------------------------------------------------------------


def test_segmenter_with_flip_averages_its_backends_logits(tiny_model_dir):
    plain = Segmenter.from_pretrained(tiny_model_dir)
    flipped = Segmenter.from_pretrained(tiny_model_dir, flip=True)
    batch = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    mirrored = plain.logits(np.ascontiguousarray(batch[..., ::-1]))[..., ::-1]
    np.testing.assert_allclose(flipped.logits(batch), (plain.logits(batch) + mirrored) / 2, atol=1e-5)
    assert not np.allclose(flipped.logits(batch), plain.logits(batch))  # a random network is not symmetric
    assert flipped.predict(street(50, 80)).shape == (50, 80)
