"""`cityseg serve`: the HTTP API in-process, the queue and batching, bad requests, and the page in a real browser."""

from __future__ import annotations

import base64
import io
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cityseg.classes import class_set
from cityseg.cli import main
from cityseg.engine import Segmenter
from cityseg.errors import CitysegError
from cityseg.serve import InferenceWorker, ServeSettings, bind_socket, create_app
from cityseg.synth import render_scene

torch.set_num_threads(1)
SIZE = (64, 64)  # the tiny model's input
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; Playwright never downloads a browser here
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def client(tiny_segmenter):
    with TestClient(create_app(tiny_segmenter)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Street scenes of three sizes, as JPEG and PNG files."""
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for seed, (height, width) in enumerate([(96, 160), (120, 90), (256, 512)]):
        photo, _ = render_scene(np.random.default_rng(seed), (height, width))
        for suffix in ("jpg", "png"):
            path = folder / f"scene{seed}.{suffix}"
            Image.fromarray(photo).save(path)
            paths[f"{seed}.{suffix}"] = path
    return paths


def post_image(client, path: Path, query: str = "", **kwargs):
    media = "image/png" if path.suffix == ".png" else "image/jpeg"
    return client.post(f"/predict{query}", content=path.read_bytes(), headers={"Content-Type": media}, **kwargs)


def png_labels(response) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(response.content)))


# ---- the API ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["0.jpg", "1.png", "2.jpg"])
def test_predict_png_is_what_the_segmenter_predicts_for_the_file(client, tiny_segmenter, photos, name):
    started = time.perf_counter()
    response = post_image(client, photos[name])
    elapsed_ms = 1000 * (time.perf_counter() - started)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-ids"] == "trainIds"
    model_ms = float(response.headers["server-timing"].split("model;dur=")[1].split(",")[0])
    # the latency counts the model's time and more, and no more than the client waited
    assert 0 < model_ms <= float(response.headers["x-latency-ms"]) <= elapsed_ms
    labels = png_labels(response)
    expected = tiny_segmenter.predict(photos[name])
    assert labels.dtype == np.uint8
    assert labels.shape == expected.shape == Image.open(photos[name]).size[::-1]
    np.testing.assert_array_equal(labels, expected)


def test_multipart_upload_gives_the_same_answer_as_raw_bytes(client, photos):
    raw = post_image(client, photos["0.jpg"])
    form = client.post("/predict", files={"file": ("scene.jpg", photos["0.jpg"].read_bytes(), "image/jpeg")})
    assert form.status_code == 200
    np.testing.assert_array_equal(png_labels(form), png_labels(raw))


def test_json_gives_class_shares_that_match_the_png(client, tiny_segmenter, photos):
    labels = png_labels(post_image(client, photos["2.jpg"]))
    started = time.perf_counter()
    body = post_image(client, photos["2.jpg"], "?format=json").json()
    elapsed_ms = 1000 * (time.perf_counter() - started)
    assert (body["width"], body["height"]) == (labels.shape[1], labels.shape[0])
    assert 0 < body["timing_ms"]["model"] <= body["latency_ms"] <= elapsed_ms and body["batch_size"] == 1
    assert body["backend"] == "torch" and body["class_set"] == "train19"
    counts = np.bincount(labels.ravel(), minlength=19)
    assert [c["index"] for c in body["classes"]] == sorted(np.flatnonzero(counts), key=lambda i: -counts[i])
    for entry in body["classes"]:
        assert entry["pixels"] == counts[entry["index"]]
        assert entry["share"] == pytest.approx(counts[entry["index"]] / labels.size)
        assert entry["name"] == tiny_segmenter.class_set.names[entry["index"]]
        assert tuple(entry["color"]) == tiny_segmenter.class_set.colors[entry["index"]]
    assert sum(entry["share"] for entry in body["classes"]) == pytest.approx(1.0)


def test_label_ids_png_holds_official_ids(client, tiny_segmenter, photos):
    classes = png_labels(post_image(client, photos["0.jpg"]))
    response = post_image(client, photos["0.jpg"], "?ids=labelids")
    assert response.headers["x-ids"] == "labelIds"
    np.testing.assert_array_equal(png_labels(response), tiny_segmenter.class_set.to_label_ids(classes))


def test_health_and_classes_describe_the_model(client, tiny_segmenter):
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert (health["backend"], health["class_set"], tuple(health["input_size"])) == ("torch", "train19", SIZE)
    assert health["in_flight"] == 0
    table = client.get("/classes").json()
    assert table["class_set"] == "train19"
    classes = tiny_segmenter.class_set
    assert [c["name"] for c in table["classes"]] == list(classes.names)
    assert [tuple(c["color"]) for c in table["classes"]] == list(classes.colors)
    assert [c["label_id"] for c in table["classes"]] == list(classes.class_to_id)
    assert [c["index"] for c in table["classes"]] == list(range(classes.num_classes))


def test_openapi_schema_documents_the_api(client):
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/health", "/classes"} <= set(schema["paths"])
    post = schema["paths"]["/predict"]["post"]
    assert {"image/jpeg", "image/png", "multipart/form-data"} <= set(post["requestBody"]["content"])
    assert {"200", "400", "413", "415", "503"} <= set(post["responses"])
    assert "image/png" in post["responses"]["200"]["content"]
    assert {"format", "ids"} <= {p["name"] for p in post["parameters"]}


def test_page_is_one_self_contained_file(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'id="overlay"' in page and 'id="legend"' in page and 'id="opacity"' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page must fetch nothing from outside"
    assert "@import" not in page and "<script src" not in page


# ---- bad requests -----------------------------------------------------------------------------


def _truncated(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("make_body", "media", "status", "code"),
    [
        (lambda p: b"", "image/jpeg", 400, "empty_body"),
        (lambda p: b"this is not a picture", "image/jpeg", 400, "not_an_image"),
        (lambda p: b"%PDF-1.4 not a picture", "application/octet-stream", 400, "not_an_image"),
        (lambda p: _truncated(p["2.jpg"]), "image/jpeg", 400, "corrupt_image"),
        (lambda p: _truncated(p["2.png"]), "image/png", 400, "corrupt_image"),
        (lambda p: p["0.jpg"].read_bytes(), "text/plain", 415, "unsupported_media_type"),
        (lambda p: b'{"image": "x"}', "application/json", 415, "unsupported_media_type"),
        (lambda p: b"a=b", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
def test_bad_uploads_get_a_clear_json_error_and_the_server_goes_on(client, photos, make_body, media, status, code):
    response = client.post("/predict", content=make_body(photos), headers={"Content-Type": media})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["message"], str) and "\n" not in body["message"] and len(body["message"]) > 20
    assert post_image(client, photos["0.jpg"]).status_code == 200  # still serving


def test_decompression_bombs_are_refused_with_413(client, monkeypatch):
    buffer = io.BytesIO()
    Image.new("RGB", (100, 100), (90, 90, 90)).save(buffer, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL refuses over twice this: a bomb
    response = client.post("/predict", content=buffer.getvalue(), headers={"Content-Type": "image/png"})
    assert response.status_code == 413 and response.json()["error"] == "image_too_large"
    assert "too many pixels" in response.json()["message"]


def test_form_without_a_file_is_refused(client):
    response = client.post("/predict", data={"note": "no file here"}, files={"other": (None, "text")})
    assert response.status_code == 400
    assert response.json()["error"] == "no_file"


def test_bad_parameters_and_routes_get_json_errors(client):
    response = client.post("/predict?format=xml", content=b"x", headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_parameter" and "format" in response.json()["message"]
    assert client.get("/nowhere").json()["error"] == "not_found"
    assert client.get("/predict").status_code == 405


def test_a_query_parameter_the_route_does_not_take_is_refused_not_ignored(client, photos):
    misspelt = post_image(client, photos["0.png"], "?fromat=json")
    assert misspelt.status_code == 422 and misspelt.json()["error"] == "invalid_parameter"
    assert misspelt.json()["message"] == "unknown query parameter 'fromat' for /predict; it takes format, ids"
    assert client.get("/health?verbose=1").json()["message"].endswith("it takes none")
    assert client.get("/health").status_code == 200 and client.get("/?from=mail").status_code == 200


def test_upload_and_image_size_limits(tiny_segmenter, photos):
    settings = ServeSettings(max_upload_bytes=20_000, max_pixels=100_000, max_side=300)
    with TestClient(create_app(tiny_segmenter, settings)) as small:
        big = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(big).save(buffer, format="PNG")  # noise: about 120 kB
        response = small.post("/predict", content=buffer.getvalue(), headers={"Content-Type": "image/png"})
        assert response.status_code == 413 and response.json()["error"] == "upload_too_large"
        assert "20000" not in response.json()["message"] and "MiB" in response.json()["message"]

        # no Content-Length (chunked): refused while reading
        chunks = (buffer.getvalue()[i : i + 8192] for i in range(0, len(buffer.getvalue()), 8192))
        response = small.post("/predict", content=chunks, headers={"Content-Type": "image/png"})
        assert response.status_code == 413 and response.json()["error"] == "upload_too_large"

        flat = io.BytesIO()
        Image.new("RGB", (400, 30), (90, 90, 90)).save(flat, format="PNG")  # tiny file, too wide
        response = small.post("/predict", content=flat.getvalue(), headers={"Content-Type": "image/png"})
        assert response.status_code == 413 and response.json()["error"] == "image_too_large"
        assert "400x30" in response.json()["message"]

        assert post_image(small, photos["1.jpg"]).status_code == 200  # a photo within every limit


# ---- queueing, batching, many clients ---------------------------------------------------------


def test_worker_is_fifo_batches_what_waits_and_answers_each_request(tiny_segmenter):
    started, release, batches = threading.Event(), threading.Event(), []

    def run(batch):  # (B, 3, h, w) -> "logits" that say which image they came from
        batches.append(batch[:, 0, 0, 0].tolist())
        started.set()
        release.wait(10)
        return batch * 2

    worker = InferenceWorker(run, max_batch=4)
    try:
        images = [np.full((3, 2, 2), i, dtype=np.float32) for i in range(6)]
        futures = [worker.submit(images[0])]
        assert started.wait(10)  # the first forward pass is running: the rest must wait in the queue
        futures += [worker.submit(image) for image in images[1:]]
        release.set()
        results = [future.result(10) for future in futures]
    finally:
        worker.close()
    assert batches == [[0.0], [1.0, 2.0, 3.0, 4.0], [5.0]]  # oldest first, at most max_batch per pass
    for image, result in zip(images, results, strict=True):
        np.testing.assert_array_equal(result.logits, image * 2)
    assert [r.batch_size for r in results] == [1, 4, 4, 4, 4, 1]
    assert worker.images == 6 and worker.batches == 3


def test_worker_survives_a_failing_batch():
    calls = []

    def run(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return batch

    worker = InferenceWorker(run, max_batch=1)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            worker.submit(np.zeros((3, 2, 2), np.float32)).result(10)
        assert worker.submit(np.ones((3, 2, 2), np.float32)).result(10).logits.sum() == 12
    finally:
        worker.close()


def test_full_queue_answers_503_then_recovers(tiny_segmenter, photos):
    release = threading.Event()
    entered = threading.Event()

    def slow(batch):
        entered.set()
        release.wait(10)
        return tiny_segmenter.logits(batch)

    blocked = Segmenter(slow, tiny_segmenter.info)
    with TestClient(create_app(blocked, ServeSettings(queue_size=1))) as one_slot:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post_image, one_slot, photos["0.jpg"])
            assert entered.wait(10)
            refused = post_image(one_slot, photos["1.png"])
            assert refused.status_code == 503
            assert refused.json()["error"] == "busy" and refused.headers["retry-after"] == "1"
            assert one_slot.get("/health").json()["in_flight"] == 1  # health is never queued
            release.set()
            assert first.result(10).status_code == 200
        assert post_image(one_slot, photos["1.png"]).status_code == 200
        assert one_slot.get("/health").json()["in_flight"] == 0


def test_many_concurrent_clients_each_get_their_own_answer(client, tiny_segmenter, photos):
    names = ["0.jpg", "1.png", "2.jpg", "0.png", "1.jpg", "2.png"]
    expected = {name: tiny_segmenter.predict(photos[name]) for name in names}
    jobs = [names[i % len(names)] for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda name: post_image(client, photos[name]), jobs))
    assert [r.status_code for r in responses] == [200] * len(jobs)
    for name, response in zip(jobs, responses, strict=True):
        np.testing.assert_array_equal(png_labels(response), expected[name])
    assert client.get("/health").json()["in_flight"] == 0


def test_onnx_backend_serves_the_same_classes(tiny_model_dir, tiny_segmenter, photos, tmp_path):
    from cityseg.export import torch_to_onnx
    from cityseg.models import load_model

    onnx_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, onnx_dir)
    net, _ = load_model(onnx_dir)
    torch_to_onnx(net, onnx_dir / "model.onnx", np.zeros((1, 3, *SIZE), dtype=np.float32))
    with TestClient(create_app(Segmenter.from_pretrained(onnx_dir, backend="onnx"))) as onnx_client:
        assert onnx_client.get("/health").json()["backend"] == "onnx"
        response = post_image(onnx_client, photos["2.jpg"])
        assert response.status_code == 200
        agreement = (png_labels(response) == tiny_segmenter.predict(photos["2.jpg"])).mean()
        assert agreement > 0.99


# ---- the command ------------------------------------------------------------------------------


def test_serve_command_reports_a_missing_model_in_one_line(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nothing"), "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cityseg: error:") and "not found" in error and error.count("\n") == 1


def test_a_port_in_use_is_a_clear_error():
    taken = bind_socket("127.0.0.1", 0)
    try:
        with pytest.raises(CitysegError, match="choose another --port"):
            bind_socket("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_sigterm_stops_the_server_cleanly_with_exit_status_0(tiny_model_dir, photos):
    """A service manager's stop: the request in flight is answered, then the process exits 0 (not -15)."""
    import signal
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "cityseg.cli",
        "serve",
        str(tiny_model_dir),
        "--port",
        "0",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://\S+/", server.stdout.readline()).group(0)
        data = next(iter(photos.values())).read_bytes()
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(httpx.post, f"{url}predict", content=data, headers={"Content-Type": "image/jpeg"})
            time.sleep(0.05)
            server.send_signal(signal.SIGTERM)
            assert answer.result(30).status_code == 200
        assert server.wait(30) == 0
        assert "stopped" in server.stdout.read()
    finally:
        server.kill()


def test_serve_command_passes_its_flags_on(tiny_model_dir, monkeypatch):
    import cityseg.serve

    calls = []
    monkeypatch.setattr(cityseg.serve, "serve", lambda model, **options: calls.append((model, options)))
    flags = ["--backend", "onnx", "--host", "0.0.0.0", "--port", "0", "--queue-size", "3", "--max-batch", "2"]
    assert main(["serve", str(tiny_model_dir), *flags, "--max-upload-mb", "1.5", "--max-megapixels", "2"]) == 0
    (model, options), settings = calls[0], calls[0][1]["settings"]
    assert model == str(tiny_model_dir)
    assert (options["options"].backend, options["host"], options["port"]) == ("onnx", "0.0.0.0", 0)
    assert (settings.queue_size, settings.max_batch) == (3, 2)
    assert (settings.max_upload_bytes, settings.max_pixels) == (int(1.5 * 2**20), 2_000_000)


# ---- the page in a real browser ---------------------------------------------------------------


@pytest.mark.slow
def test_page_in_headless_chromium_shows_overlay_legend_and_errors(tiny_model_dir, photos, tmp_path, live_server):
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python package) is not installed")
    photo = photos["2.jpg"]
    with live_server(Segmenter.from_pretrained(tiny_model_dir)) as url:
        api = httpx.post(
            url + "predict?format=json", content=photo.read_bytes(), headers={"Content-Type": "image/jpeg"}
        )
        expected = {c["name"]: c["share"] for c in api.json()["classes"]}
        ids = png_labels(
            httpx.post(url + "predict", content=photo.read_bytes(), headers={"Content-Type": "image/jpeg"})
        )
        colors = np.asarray(class_set("train19").colors, dtype=np.uint8)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(tmp_path / "profile"),  # a fresh user-data-dir
                executable_path=str(CHROMIUM),
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1100, "height": 640},
            )
            try:
                page = browser.new_page()
                page.set_default_timeout(20_000)
                problems: list[str] = []
                page.on("pageerror", lambda error: problems.append(str(error)))
                page.goto(url)
                page.wait_for_function("document.getElementById('model').textContent.includes('train19')")

                # drop the photo on the page, as a user drags a file onto it
                transfer = page.evaluate_handle(
                    """([name, bytes]) => {
                        const transfer = new DataTransfer();
                        transfer.items.add(new File([new Uint8Array(bytes)], name, {type: "image/jpeg"}));
                        return transfer;
                    }""",
                    [photo.name, list(photo.read_bytes())],
                )
                page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
                page.wait_for_selector("#legend li")
                assert page.is_visible("#overlay") and page.is_visible("#photo")
                size = page.evaluate(
                    "[document.getElementById('overlay').width, document.getElementById('overlay').height]"
                )
                assert size == [ids.shape[1], ids.shape[0]]
                legend = page.eval_on_selector_all(
                    "#legend li", "items => items.map(i => [i.querySelector('.name').textContent, +i.dataset.share])"
                )
                assert [name for name, _ in legend] == list(expected)  # same classes, same order as the API
                for name, share in legend:
                    assert share == pytest.approx(expected[name])
                # the overlay's pixels are the colours of the classes the API returns at those pixels
                data_url = page.eval_on_selector("#overlay", "canvas => canvas.toDataURL('image/png')")
                overlay = np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))
                np.testing.assert_array_equal(overlay, colors[ids])
                assert float(page.get_attribute("#timing", "data-latency-ms")) > 0
                assert "ms" in page.inner_text("#timing")

                page.fill("#opacity", "25")
                assert page.eval_on_selector("#overlay", "c => c.style.opacity") == "0.25"

                # a file that is not an image: a clear message, and the page still works after it
                page.set_input_files("#file", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"})
                page.wait_for_selector("#error:not([hidden])")
                assert "not an image" in page.inner_text("#error")
                page.set_input_files("#file", str(photos["0.jpg"]))
                page.wait_for_selector("#error", state="hidden")
                page.wait_for_function("document.getElementById('overlay').width === 160")
                assert page.eval_on_selector_all("#legend li", "items => items.length") >= 1
                page.screenshot(path=str(tmp_path / "serve.png"))
                assert problems == []
            finally:
                browser.close()
        assert (tmp_path / "serve.png").stat().st_size > 10_000
        assert httpx.get(url + "health").json()["served"] >= 4  # the server survived it all


def test_the_heap_is_trimmed_on_a_timer_and_its_arenas_capped(monkeypatch):
    import ctypes
    import platform

    from cityseg.serve import memory

    trims = []
    monkeypatch.setattr(memory, "trim_heap", lambda: trims.append(time.monotonic()))
    trimmer = memory.HeapTrimmer(seconds=0.01).start()
    deadline = time.monotonic() + 5
    while len(trims) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    trimmer.stop()
    trimmer._thread.join(timeout=5)
    assert len(trims) >= 3 and not trimmer._thread.is_alive()
    if platform.libc_ver()[0] == "glibc":  # the settings take where glibc is the C library
        assert memory.cap_arenas(8) and hasattr(ctypes.CDLL(None), "malloc_trim")
