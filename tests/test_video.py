"""cityseg.video: segmenting videos frame by frame (tiny videos made here with PyAV, the tiny model)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from cityseg.cli import main
from cityseg.engine import PredictOptions
from cityseg.errors import CitysegError
from cityseg.predict import predict_files
from cityseg.video import (
    ENCODERS,
    Encoder,
    FlickerMeter,
    Legend,
    VideoCutShortError,
    VideoOptions,
    check_video_settings,
    choose_encoder,
    iter_video,
    predict_video,
    split_video_inputs,
)
from cityseg.video import pipeline as video_pipeline
from video_helpers import FPS, FRAMES, HEIGHT, WIDTH, noise_frames, read_video, street_frames, write_video


def leftovers(folder: Path) -> list[str]:
    """Temporary files left in ``folder`` (atomic writes name them ``.STEM.*.tmp*``)."""
    return [p.name for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".write-test")]


def one_line_naming(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("videos") / "drive.mp4", street_frames())


# ---- frames, rate and size --------------------------------------------------------------------


def test_predict_video_keeps_frames_rate_and_size(tiny_segmenter, drive, tmp_path):
    summary = predict_video(tiny_segmenter, drive, tmp_path)
    frames, rate, size = read_video(tmp_path / "drive_overlay.mp4")
    assert summary.frames == len(frames) == FRAMES
    assert rate == FPS and summary.fps == FPS
    assert size == (WIDTH, HEIGHT) == summary.size
    assert "H.264" in summary.codec
    assert summary.video_s == pytest.approx(FRAMES / FPS)
    assert summary.frames_per_s > 0 and summary.realtime_factor == pytest.approx(summary.frames_per_s / FPS)
    assert set(summary.stage_s) == {"decode", "model", "encode"}
    assert sum(summary.stage_shares.values()) == pytest.approx(1)
    text = str(summary)
    assert f"{FRAMES} frames" in text and "real time" in text and "flicker" in text
    assert leftovers(tmp_path) == []


def test_odd_size_is_padded_by_one_pixel_and_said(tiny_segmenter, tmp_path):
    odd = write_video(tmp_path / "odd.mkv", street_frames(4, 63, 95), codec="ffv1", pix_fmt="yuv444p")
    summary = predict_video(tiny_segmenter, odd, tmp_path / "out", VideoOptions(frames=True))
    frames, _, size = read_video(tmp_path / "out" / "odd_overlay.mp4")
    assert size == (96, 64) and len(frames) == 4
    assert summary.size == (95, 63) and any("odd" in note for note in summary.notes)
    pngs = sorted((tmp_path / "out" / "odd_frames").glob("*.png"))
    assert len(pngs) == 4 and Image.open(pngs[0]).size == (95, 63)


def test_rotated_phone_video_comes_out_upright(tiny_segmenter, tmp_path):
    stored = street_frames(3)  # 96 wide, 64 high as stored; the display matrix turns it to portrait
    path = write_video(tmp_path / "phone.mp4", stored, rotation=90)
    frame, labels = next(iter(iter_video(tiny_segmenter, path)))
    assert frame.shape == (WIDTH, HEIGHT, 3) and labels.shape == (WIDTH, HEIGHT)
    summary = predict_video(tiny_segmenter, path, tmp_path)
    assert summary.size == (HEIGHT, WIDTH) and read_video(tmp_path / "phone_overlay.mp4")[2] == (HEIGHT, WIDTH)


def test_variable_frame_rate_keeps_every_frame_and_says_so(tiny_segmenter, tmp_path):
    times = [0, 100, 140, 240, 280, 380, 420, 520]  # 100 ms and 40 ms apart, alternately
    path = write_video(tmp_path / "vfr.mp4", street_frames(8), frame_times=times)
    summary = predict_video(tiny_segmenter, path, tmp_path)
    assert summary.frames == 8 == len(read_video(tmp_path / "vfr_overlay.mp4")[0])
    assert any("variable frame rate" in note for note in summary.notes)


# ---- what the model sees ----------------------------------------------------------------------


def test_iter_video_yields_what_predict_video_writes(tiny_segmenter, drive, tmp_path):
    summary = predict_video(tiny_segmenter, drive, tmp_path, VideoOptions(frames=True))
    pngs = sorted((tmp_path / "drive_frames").glob("*_trainIds.png"))
    yielded = list(iter_video(tiny_segmenter, drive))
    assert len(pngs) == len(yielded) == summary.label_pngs == FRAMES
    for png, (frame, labels) in zip(pngs, yielded, strict=True):
        assert frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8
        np.testing.assert_array_equal(np.asarray(Image.open(png)), labels)


def test_frames_go_through_the_photo_path(tiny_segmenter, drive):
    """A frame's labels are those of the same RGB array segmented as a photo (the resize back near edges only)."""
    frame, labels = next(iter(iter_video(tiny_segmenter, drive)))
    np.testing.assert_array_equal(labels, tiny_segmenter.predict(frame))


def test_every_n_holds_labels_in_between(tiny_segmenter, drive):
    every_frame = [labels for _, labels in iter_video(tiny_segmenter, drive)]
    held = [labels for _, labels in iter_video(tiny_segmenter, drive, every=3)]
    assert len(held) == FRAMES
    for index, labels in enumerate(held):
        np.testing.assert_array_equal(labels, every_frame[index - index % 3])


def test_every_n_with_batches_matches_batch_one(tiny_segmenter, drive, tmp_path):
    one = [labels for _, labels in iter_video(tiny_segmenter, drive, every=2)]
    batched = [labels for _, labels in iter_video(tiny_segmenter, drive, every=2, batch_size=3)]
    for a, b in zip(one, batched, strict=True):
        assert np.mean(a == b) > 0.99  # batched convolutions may round differently
    summary = predict_video(
        tiny_segmenter, drive, tmp_path, VideoOptions(every=2), PredictOptions(batch_size=3, progress=False)
    )
    assert summary.segmented == (FRAMES + 1) // 2 and summary.frames == FRAMES and "1 in 2" in str(summary)


def test_smoothing_reduces_flicker(tiny_segmenter, tmp_path):
    noisy = write_video(tmp_path / "noisy.mp4", noise_frames(8))
    plain = predict_video(tiny_segmenter, noisy, tmp_path / "plain")
    smooth = predict_video(tiny_segmenter, noisy, tmp_path / "smooth", VideoOptions(smooth=0.2))
    assert plain.flicker > 0.05
    assert smooth.flicker < 0.6 * plain.flicker
    assert "smoothing" in str(smooth)


def test_flicker_meter_counts_changed_pixels():
    meter = FlickerMeter()
    meter.update(np.zeros((2, 5), np.uint8))
    meter.update(np.ones((2, 5), np.uint8))  # all 10 change
    meter.update(np.ones((2, 5), np.uint8))  # none
    assert meter.share == pytest.approx(0.5)


def test_legend_lists_the_classes_present(tiny_segmenter):
    legend = Legend(tiny_segmenter.class_set, frame_height=240)
    labels = np.zeros((240, 320), np.uint8)
    labels[:, 200:] = 13  # road and car
    assert legend.present(labels) == (0, 13)
    frame = Image.new("RGB", (320, 240), (128, 128, 128))
    legend.draw(frame, labels)
    corner = np.asarray(frame)[:40, :60]
    assert (corner != 128).any() and (np.asarray(frame)[200:, 300:] == 128).all()  # drawn in the corner only


@pytest.mark.parametrize(("every", "smooth", "batch"), [(0, None, 1), (1, 1.5, 1), (1, -0.1, 1), (1, None, 0)])
def test_bad_settings_are_refused(every, smooth, batch):
    with pytest.raises(CitysegError):
        check_video_settings(every, smooth, batch)


def test_smooth_off_and_one_mean_no_smoothing():
    assert check_video_settings(1, 0, 1) is None and check_video_settings(1, 1.0, 1) is None
    assert check_video_settings(2, 0.3, 4) == 0.3


# ---- encoders ----------------------------------------------------------------------------------


def test_without_h264_another_codec_is_used_and_named(tiny_segmenter, drive, tmp_path, monkeypatch):
    monkeypatch.setitem(ENCODERS, "libx264", Encoder("no-such-encoder", "missing"))
    chosen = choose_encoder(("libx264", "mpeg4"))
    assert chosen.name == "mpeg4"
    summary = predict_video(tiny_segmenter, drive, tmp_path, VideoOptions(encoder=chosen))
    assert "MPEG-4" in str(summary) and len(read_video(tmp_path / "drive_overlay.mp4")[0]) == FRAMES


# ---- bad input ---------------------------------------------------------------------------------


def test_truncated_video_keeps_the_good_frames_and_fails(tiny_segmenter, tmp_path):
    whole = write_video(tmp_path / "whole.mp4", noise_frames(12), options={"movflags": "+faststart"})
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "out"
    with pytest.raises(VideoCutShortError) as caught:
        predict_video(tiny_segmenter, cut, out)
    message = one_line_naming(caught, cut)
    written = caught.value.summary.frames
    assert 0 < written < 12 and f"{written} good frames" in message
    assert len(read_video(out / "cut_overlay.mp4")[0]) == written
    assert leftovers(out) == []


def _no_video_stream(folder: Path) -> Path:
    path = folder / "sound.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def _unsupported_codec(folder: Path) -> Path:
    """An AVI whose codec tag FFmpeg does not know (MPEG-4's FourCC overwritten)."""
    source = write_video(folder / "source.avi", street_frames(3), codec="mpeg4")
    path = folder / "strange.avi"
    path.write_bytes(source.read_bytes().replace(b"FMP4", b"QQQQ"))
    return path


def _zero_length(folder: Path) -> Path:
    path = folder / "zero.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height = WIDTH, HEIGHT
        container.start_encoding()
    return path


def _empty(folder: Path) -> Path:
    path = folder / "empty.mkv"
    path.write_bytes(b"")
    return path


def _not_a_video(folder: Path) -> Path:
    path = folder / "notes.mov"
    path.write_text("not a video at all\n" * 20)
    return path


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_no_video_stream, "no video stream"),
        (_unsupported_codec, "codec"),
        (_zero_length, "zero-length"),
        (_empty, "empty"),
        (_not_a_video, "cannot open"),
    ],
)
def test_bad_videos_give_one_line_errors_naming_the_file(tiny_segmenter, tmp_path, make, words):
    path = make(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(CitysegError) as caught:
        predict_video(tiny_segmenter, path, out)
    assert words in one_line_naming(caught, path)
    assert list(out.iterdir()) == []  # no output, no temporary file
    with pytest.raises(CitysegError):
        next(iter(iter_video(tiny_segmenter, path)))


def test_unwritable_output_folder(tiny_segmenter, drive, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(CitysegError) as caught:
        predict_video(tiny_segmenter, drive, blocker / "out")
    one_line_naming(caught, blocker / "out")


def test_interrupted_run_leaves_nothing_behind(tiny_segmenter, drive, tmp_path, monkeypatch):
    calls = []

    def interrupt_on_the_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = video_pipeline.edge_labels_at_size
    monkeypatch.setattr(video_pipeline, "edge_labels_at_size", interrupt_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        predict_video(tiny_segmenter, drive, tmp_path, VideoOptions(frames=True))
    assert not (tmp_path / "drive_overlay.mp4").exists() and leftovers(tmp_path) == []


# ---- inputs and the command line ------------------------------------------------------------------


def test_split_video_inputs(tmp_path, drive):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "b.mp4").write_bytes(drive.read_bytes())
    (folder / "a.webm").write_bytes(b"x")
    Image.new("RGB", (8, 8)).save(folder / "photo.jpg")
    photos, videos = split_video_inputs([folder, str(folder / "*.mp4"), drive])
    assert photos == [folder] and [v.name for v in videos] == ["a.webm", "b.mp4", "drive.mp4"]
    with pytest.raises(CitysegError, match="pairs"):
        split_video_inputs([drive], pairs=True)


def test_predict_files_takes_photos_and_videos(tiny_model_dir, drive, tmp_path):
    photo = tmp_path / "street.png"
    Image.fromarray(street_frames(1)[0]).save(photo)
    summary = predict_files(
        tiny_model_dir, [photo, drive], tmp_path / "out", PredictOptions(progress=False), VideoOptions(every=2)
    )
    assert summary.images == 1 and len(summary.videos) == 1
    assert (tmp_path / "out" / "street_overlay.jpg").is_file() and (tmp_path / "out" / "drive_overlay.mp4").is_file()
    assert "predicted 1 image(s)" in str(summary) and "drive.mp4" in str(summary)


def test_skip_bad_lists_a_bad_video_and_goes_on(tiny_model_dir, drive, tmp_path):
    bad = _not_a_video(tmp_path)
    summary = predict_files(
        tiny_model_dir, [bad, drive], tmp_path / "out", PredictOptions(progress=False, skip_bad=True)
    )
    assert [source for source, _ in summary.skipped] == [str(bad)] and len(summary.videos) == 1
    assert "skipped 1 unreadable file(s)" in str(summary)


def test_cli_predict_video(tiny_model_dir, drive, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(tiny_model_dir), str(drive), "--out", str(out), "--no-progress"]) == 0
    assert len(read_video(out / "drive_overlay.mp4")[0]) == FRAMES
    printed = capsys.readouterr().out
    assert "frames/s" in printed and "real time" in printed and f"{FRAMES} frames" in printed


def test_cli_bad_video_exits_nonzero_with_one_line(tiny_model_dir, tmp_path, capsys):
    path = _not_a_video(tmp_path)
    assert main(["predict", str(tiny_model_dir), str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("cityseg: error:") and "\n" not in error and str(path) in error


@pytest.mark.slow
def test_the_video_benchmark_runs_the_recipes_network_in_a_folder_it_cleans_up(
    tmp_path, monkeypatch, capsys, benchmark_loader
):
    from cityseg.config import Config

    benchmark = benchmark_loader("video")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where its temporary work folder goes
    quick = ["--seconds", "0.5", "--fps", "10", "--size", "160x96", "--backends", "torch", "--every", "0"]
    benchmark.main([*quick, "--light", "", "--memory-seconds", ""])
    printed = capsys.readouterr().out
    recipe = Config.from_yaml("cpu-hour")
    height, width = recipe.data.size
    assert f"model: {recipe.model.arch}/{recipe.model.encoder} at {width}x{height}, random weights" in printed
    assert "| PyTorch | 5 |" in printed  # 0.5 s at 10 fps
    assert list(tmp_path.glob("video-bench-*")) == []  # its work folder, random model included, is gone


def test_a_video_whose_metadata_is_not_utf8_is_read(tmp_path):
    """Found by fuzzing: PyAV raised UnicodeDecodeError while opening a file whose stream title was not UTF-8."""
    from cityseg.video.reader import FrameReader

    path = tmp_path / "titled.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.metadata["title"] = "QQQQQQQQ"
        for frame in street_frames(3, 32, 64):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    path.write_bytes(path.read_bytes().replace(b"QQQQQQQQ", b"Q\x88\x88QQQQQ"))
    with FrameReader(path) as reader:
        assert sum(1 for _ in reader) == 3
