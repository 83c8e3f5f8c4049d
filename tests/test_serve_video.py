"""`cityseg serve`: POST /predict/video answers with the segmented video, within the server's limits."""

from __future__ import annotations

import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import cityseg.video
from cityseg.engine import Segmenter
from cityseg.serve import ServeSettings, create_app
from video_helpers import FPS, FRAMES, HEIGHT, WIDTH, read_video, street_frames, write_video

torch.set_num_threads(1)
ROUTE = "/predict/video"


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("videos") / "drive.mp4", street_frames())


@pytest.fixture(scope="module")
def client(tiny_segmenter):
    with TestClient(create_app(tiny_segmenter)) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def own_temp_folder(tmp_path, monkeypatch):
    """The server's temporary folders go under this test's folder, so the tests can see that none is left."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "server-tmp"))
    (tmp_path / "server-tmp").mkdir()
    yield tmp_path / "server-tmp"
    assert list((tmp_path / "server-tmp").iterdir()) == []


def post_video(client, data: bytes, media: str = "video/mp4", query: str = ""):
    return client.post(ROUTE + query, content=data, headers={"Content-Type": media})


def test_the_answer_is_the_video_predict_video_writes(client, tiny_segmenter, drive, tmp_path):
    response = post_video(client, drive.read_bytes())
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    assert response.headers["x-frames"] == str(FRAMES) and response.headers["x-codec"].startswith("H.264")
    assert float(response.headers["x-video-seconds"]) == pytest.approx(FRAMES / FPS, abs=0.01)
    assert float(response.headers["x-frames-per-second"]) > 0 and float(response.headers["x-latency-ms"]) > 0
    served = tmp_path / "served.mp4"
    served.write_bytes(response.content)
    frames, rate, size = read_video(served)
    assert len(frames) == FRAMES and rate == FPS and size == (WIDTH, HEIGHT)
    summary = cityseg.video.predict_video(tiny_segmenter, drive, tmp_path / "cli")
    expected, _, _ = read_video(summary.overlay)
    for got, want in zip(frames, expected, strict=True):
        np.testing.assert_array_equal(got, want)  # same labels, same overlay, same encoder


def test_segmented_videos_leave_no_codec_threads_behind(client, drive):
    """Found by the soak: each video's decoder and encoder (PyAV, in reference cycles) kept their codec threads
    and buffers alive until a full garbage collection; a server's threads climbed to 120 in 30 minutes."""
    import re

    def threads() -> int:
        return int(re.search(r"Threads:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))

    data = drive.read_bytes()
    assert post_video(client, data).status_code == 200
    before = threads()
    for _ in range(3):
        assert post_video(client, data).status_code == 200
    assert threads() <= before + 2  # a codec pool left per video would add 3 or more each time


def test_multipart_form_and_options(client, drive, tmp_path):
    form = client.post(ROUTE + "?every=2&smooth=0.5", files={"file": ("drive.mp4", drive.read_bytes(), "video/mp4")})
    assert form.status_code == 200 and form.headers["x-frames"] == str(FRAMES)
    raw = post_video(client, drive.read_bytes(), query="?every=2&smooth=0.5")
    assert raw.content == form.content
    assert post_video(client, drive.read_bytes(), query="?every=0").json()["error"] == "invalid_parameter"


@pytest.mark.parametrize(
    ("make_body", "media", "status", "code", "words"),
    [
        (lambda d: b"", "video/mp4", 400, "bad_video", "empty"),
        (lambda d: b"this is not a video at all" * 40, "video/mp4", 400, "bad_video", "not a video"),
        (lambda d: d.read_bytes()[: len(d.read_bytes()) // 2], "video/mp4", 400, "bad_video", "cut off"),
        (lambda d: d.read_bytes(), "image/jpeg", 415, "unsupported_media_type", "not a video"),
    ],
)
def test_bad_videos_get_a_json_error_naming_the_upload(client, drive, make_body, media, status, code, words):
    response = post_video(client, make_body(drive), media)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == code and words in body["message"] and "\n" not in body["message"]
    assert "cityseg-video-" not in body["message"] and tempfile.gettempdir() not in body["message"]
    assert post_video(client, drive.read_bytes()).status_code == 200  # the server goes on


@pytest.mark.parametrize(
    ("settings", "status", "code"),
    [
        ({"max_video_seconds": 0.3}, 413, "video_too_long"),
        ({"max_pixels": 64 * 64}, 413, "video_too_large"),
        ({"max_side": 80}, 413, "video_too_large"),
        ({"max_upload_bytes": 1000}, 413, "upload_too_large"),
    ],
)
def test_limits(tiny_segmenter, drive, settings, status, code):
    with TestClient(create_app(tiny_segmenter, ServeSettings(**settings))) as client:
        response = post_video(client, drive.read_bytes())
    assert response.status_code == status and response.json()["error"] == code


def test_a_header_that_understates_the_length_does_not_get_past_the_limit(tiny_segmenter, drive, monkeypatch):
    real_open = cityseg.video.open_video

    def short_header(path):
        container, stream, info = real_open(path)
        info.duration_s, info.frames = 0.1, 1
        return container, stream, info

    monkeypatch.setattr(cityseg.video, "open_video", short_header)
    with TestClient(create_app(tiny_segmenter, ServeSettings(max_video_seconds=0.3))) as client:
        response = post_video(client, drive.read_bytes())
    assert response.status_code == 413 and response.json()["error"] == "video_too_long"


def test_one_video_at_a_time_and_photos_go_on(tiny_segmenter, drive, monkeypatch):
    started, release = threading.Event(), threading.Event()
    real = cityseg.video.predict_video

    def slow(*args, **kwargs):
        started.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(cityseg.video, "predict_video", slow)
    with TestClient(create_app(tiny_segmenter)) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(post_video, client, drive.read_bytes())
        assert started.wait(30)
        second = post_video(client, drive.read_bytes())
        assert second.status_code == 503 and second.json()["error"] == "busy" and "retry-after" in second.headers
        photo = client.post("/predict?format=json", content=_png(), headers={"Content-Type": "image/png"})
        assert photo.status_code == 200
        release.set()
        assert first.result(60).status_code == 200
        assert post_video(client, drive.read_bytes()).status_code == 200


def test_a_model_failing_on_a_frame_is_a_500_and_the_server_goes_on(tiny_segmenter, drive):
    calls = []

    def fails_on_the_third(batch):
        calls.append(len(batch))
        if len(calls) == 3:
            raise RuntimeError("out of memory in a convolution\nsecond line")
        return tiny_segmenter.logits(batch)

    flaky = Segmenter(fails_on_the_third, tiny_segmenter.info)
    with TestClient(create_app(flaky)) as client:
        response = post_video(client, drive.read_bytes())
        assert response.status_code == 500
        assert response.json() == {
            "error": "video_failed",
            "message": "segmenting the video failed: out of memory in a convolution",
        }
        assert post_video(client, drive.read_bytes()).status_code == 200


def test_the_page_takes_videos_and_the_schema_lists_the_route(client):
    page = client.get("/").text
    assert 'accept="image/*,video/*"' in page and '<video id="video"' in page and '"predict/video"' in page
    schema = client.get("/openapi.json").json()
    assert "video/mp4" in schema["paths"][ROUTE]["post"]["requestBody"]["content"]


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 120, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
