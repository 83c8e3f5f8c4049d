"""Tests for generated drives: frames that follow each other, a moving camera, exact labels, the video file."""

from __future__ import annotations

import inspect
import itertools
import re

import numpy as np
import pytest
from PIL import Image

from cityseg.cli import data_commands, main
from cityseg.errors import CitysegError
from cityseg.synth import DRAWN_IDS, Drive, drive_frames, labels_folder, write_drive
from cityseg.synth.camera import Camera
from cityseg.synth.geometry import ACROSS_STREET, ALONG_STREET

SIZE = (64, 128)  # (height, width): tiny frames keep the tests fast
STILL = Camera(fx=256.0, fy=512.0, cx=128.0, horizon=110.0, height=1.3)


@pytest.fixture(scope="module")
def drive() -> Drive:
    return Drive.plan(seconds=0.4, fps=10, size=SIZE, seed=3)


@pytest.fixture(scope="module")
def frames(drive) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(drive)


# ---- the moving camera ---------------------------------------------------------------------------


def test_a_posed_camera_sees_the_world_shifted_by_its_position():
    moved = STILL.posed(x=0.4, z=25.0)
    for point in ((2.0, 0.0, 10.0), (-3.0, 4.0, 60.0)):
        shifted = (point[0] + 0.4, point[1], point[2] + 25.0)
        assert moved.point(shifted) == pytest.approx(STILL.point(point))
    assert moved.depth(30.0) == pytest.approx(5.0) and moved.width_px(1.0, 35.0) == pytest.approx(25.6)
    assert moved.clamp_depth(20.0, 1.0) == pytest.approx(26.0)  # behind it: pushed to a metre ahead


def test_a_moving_camera_keeps_a_long_wall_it_has_half_passed():
    # a 40 m wall beside the street from Z = 0, the camera 25 m along it: the wall's middle is behind it
    faces = STILL.posed(x=0.0, z=25.0).box_faces((4.0, 0.0, 0.0), ALONG_STREET, ACROSS_STREET, 40.0, 0.3, 3.0)
    assert "left" in [face.name for face in faces]
    still_faces = STILL.box_faces((4.0, 0.0, -25.0), ALONG_STREET, ACROSS_STREET, 40.0, 0.3, 3.0)
    assert "left" not in [face.name for face in still_faces]  # a still camera goes by the middle


def test_posed_rays_meet_the_world_where_the_projection_put_it():
    moved = STILL.posed(x=-0.3, z=40.0)
    wall = (5.0, 1.5, 52.0)  # on a wall X = 5 that runs along the street from Z = 45
    pixel = np.array([moved.point(wall)]) - 0.5
    u, v, _, _ = moved.face_coordinates(
        pixel[:, 0],
        pixel[:, 1],
        np.array([True]),
        np.array([5.0], np.float32),
        np.array([45.0], np.float32),
        np.ones(1, np.float32),
        np.zeros(1, np.float32),
    )
    np.testing.assert_allclose([u[0], v[0]], [7.0, 1.5], rtol=1e-4, atol=1e-3)
    road = (1.0, 0.0, 48.0)
    pixel = np.array([moved.point(road)]) - 0.5
    x, z, _, _ = moved.ground_coordinates(pixel[:, 0], pixel[:, 1])
    np.testing.assert_allclose([x[0], z[0]], [1.0, 48.0], rtol=1e-6)


# ---- the frames ------------------------------------------------------------------------------------


def test_a_drive_has_the_frames_asked_for_with_exact_labels(drive, frames):
    assert len(frames) == len(drive) == 4 and drive.duration == pytest.approx(0.4)
    for photo, label_ids in frames:
        assert photo.shape == (*SIZE, 3) and photo.dtype == np.uint8
        assert label_ids.shape == SIZE and label_ids.dtype == np.uint8
        assert set(np.unique(label_ids).tolist()) <= set(DRAWN_IDS)
    assert 8 <= drive.speed <= 12 and drive.distance == pytest.approx(drive.speed * 0.3)


def test_the_camera_moves_and_the_scene_stays_the_same(frames):
    for (photo_a, ids_a), (photo_b, ids_b) in itertools.pairwise(frames):
        same = (ids_a == ids_b).mean()
        assert 0.75 < same < 1.0, same  # a metre further down the same street: most pixels keep their class
        assert not np.array_equal(photo_a, photo_b)
    first, last = frames[0][1], frames[-1][1]
    assert (first != last).mean() > (frames[0][1] != frames[1][1]).mean()  # further apart, more changed


def test_the_same_seed_gives_the_same_drive(drive, frames):
    again = Drive.plan(seconds=0.4, fps=10, size=SIZE, seed=3)
    assert again == drive
    photo, label_ids = again.frame(2)
    assert np.array_equal(photo, frames[2][0]) and np.array_equal(label_ids, frames[2][1])
    _, other_ids = next(drive_frames(seconds=0.1, fps=10, size=SIZE, seed=4))
    assert not np.array_equal(other_ids, frames[0][1])


def test_workers_draw_the_same_frames(drive, frames):
    parallel = list(drive_frames(seconds=0.4, fps=10, size=SIZE, seed=3, workers=2))
    assert len(parallel) == len(frames)
    for (photo, label_ids), (want_photo, want_ids) in zip(parallel, frames, strict=True):
        assert np.array_equal(photo, want_photo) and np.array_equal(label_ids, want_ids)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"seconds": 0}, "--seconds must be above 0"),
        ({"seconds": -2.0}, "--seconds must be above 0"),
        ({"fps": 0}, "--fps must be a whole number"),
        ({"size": (65, 128)}, "--size must be even both ways"),
        ({"size": (16, 16)}, "--size must be 32 to 4096"),
        ({"seed": -1}, "--seed must be"),
    ],
)
def test_bad_drive_arguments_are_one_line_errors(arguments, message):
    settings = {"seconds": 1.0, "fps": 10, "size": SIZE, "seed": 0} | arguments
    with pytest.raises(CitysegError, match=re.escape(message)) as error:
        Drive.plan(**settings)
    assert "\n" not in str(error.value)


# ---- the video -------------------------------------------------------------------------------------


def test_the_cli_writes_a_video_and_the_labels_of_every_frame(tmp_path, capsys):
    av = pytest.importorskip("av")
    video = tmp_path / "drives" / "street.mp4"
    argv = ["synth", "--video", str(video), "--seconds", "0.3", "--fps", "10", "--size", "64x128", "--seed", "5"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert str(video) in out and str(labels_folder(video)) in out and "3 frames of 64x128" in out
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 10 and stream.codec_context.name == "h264"
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(decoded) == 3 and decoded[0].shape == (64, 128, 3)
    truth = Drive.plan(seconds=0.3, fps=10, size=SIZE, seed=5)
    pngs = sorted(labels_folder(video).iterdir())
    assert [path.name for path in pngs] == ["000000.png", "000001.png", "000002.png"]
    for index, path in enumerate(pngs):
        photo, label_ids = truth.frame(index)
        assert np.array_equal(np.asarray(Image.open(path)), label_ids)
        assert np.abs(decoded[index].astype(int) - photo).mean() < 12  # the video is the frames, lossily
    assert not [path for path in video.parent.iterdir() if path.name.startswith(".")]  # no temporary left


def test_a_second_run_replaces_its_labels_and_keeps_others_files(tmp_path):
    video = tmp_path / "d.mp4"
    write_drive(video, seconds=0.2, fps=10, size=SIZE, seed=0)
    summary = write_drive(video, seconds=0.1, fps=10, size=SIZE, seed=0)
    assert sorted(path.name for path in summary.labels.iterdir()) == ["000000.png"]
    (summary.labels / "notes.txt").write_text("mine")
    with pytest.raises(CitysegError, match=r"notes\.txt"):
        write_drive(video, seconds=0.1, fps=10, size=SIZE, seed=0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--video", "{tmp}/d.mp4", "--seconds", "0"], "--seconds must be above 0"),
        (["--video", "{tmp}/d.mp4", "--seconds", "-1"], "--seconds must be above 0"),
        (["--video", "{tmp}/d.mp4", "--size", "63x128"], "--size must be even both ways"),
        (["--video", "{tmp}/d.mp4", "--size", "16x16"], "--size must be 32 to 4096"),
        (["--video", "{tmp}/d.mp4", "--size", "wide"], "--size must be HEIGHTxWIDTH"),
        (["--video", "{tmp}/d.mp4", "--fps", "0"], "--fps must be a whole number"),
        (["--video", "{tmp}/d.mp4", "--workers", "0"], "--workers must be a whole number"),
        (["--video", "{tmp}/file.txt/d.mp4", "--seconds", "0.1"], "cannot write to output folder"),
        (["--video", "{tmp}/d.gif", "--seconds", "0.1"], "--video must name a .mp4"),
        (["{tmp}/scenes", "--video", "{tmp}/d.mp4"], "not both"),
        (["--video", "{tmp}/d.mp4", "--count", "5"], "--count and --val-fraction are for scenes"),
        (["{tmp}/scenes", "--seconds", "3"], "--seconds is for a drive"),
        ([], "pass OUT"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_synth_arguments_are_exit_2_and_one_error_line(argv, message, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("a regular file")
    assert main(["synth", *(arg.format(tmp=tmp_path) for arg in argv)]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith("cityseg: error: ") and message in line, line
    assert not (tmp_path / "d.mp4").exists() and not (tmp_path / "d_labelIds").exists()


def test_the_cli_defaults_are_write_drives():
    defaults = {name: p.default for name, p in inspect.signature(write_drive).parameters.items()}
    cli = {"seconds": data_commands.DRIVE_SECONDS, "fps": data_commands.DRIVE_FPS, "size": data_commands.DRIVE_SIZE}
    assert cli | {"workers": 1} == {name: defaults[name] for name in (*cli, "workers")}
