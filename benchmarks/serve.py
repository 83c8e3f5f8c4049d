"""Serving under load: `cityseg serve` on loopback, many clients at once, and what it costs in time and memory.

The server runs as the real command (``python -m cityseg.cli serve MODEL --port 0``) in its own process, so
its memory (RSS, from /proc) is measured alone. After a few warm-up requests, ``--clients`` threads, each with
its own keep-alive connection, send ``--requests`` photos in all, as fast as the answers come back. Reported:
throughput, client-side latency (median and 95th percentile, the time a client waits, queueing included), the
server's own latency and mean batch size (response headers), errors (any answer but 200), and the server's
RSS before and after the load, and at its peak.

    python benchmarks/serve.py                                   # U-Net/ResNet34, random init: speed only
    python benchmarks/serve.py --model runs/latest --backend onnx
    python benchmarks/serve.py --model runs/latest --screenshot docs/serve.png --requests 0

Photos are the photo halves of ``../shared/data/cityscapes_pairs`` (``--data``), sent as JPEG; without
that folder, generated scenes. ``--screenshot`` also opens the page in headless Chromium (Debian's
/usr/bin/chromium through Playwright), drops a generated street scene on it and saves the page as a PNG.
"""

from __future__ import annotations

import argparse
import io
import itertools
import platform
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cityscapes_pairs"
CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_S = 300  # per request: a slow first ONNX Runtime run on a busy machine is not an error
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder, run folder or runs/latest (default: U-Net/ResNet34, random)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch", help="default torch")
    parser.add_argument("--onnx", metavar="FILE", help="with --backend onnx: the ONNX file (default: the model's)")
    parser.add_argument("--size", type=int, default=256, help="input size of the random model (default 256)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Cityscapes pairs (default ../shared/data/...)")
    parser.add_argument("--photos", type=int, default=32, help="distinct photos cycled through (default 32)")
    parser.add_argument("--requests", type=int, default=400, help="requests under load (default 400)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--warmup", type=int, default=8, help="requests before measuring (default 8)")
    parser.add_argument("--format", choices=("png", "json"), default="png", help="what /predict returns")
    parser.add_argument("--threads", type=int, default=2, help="server's model threads (default 2)")
    parser.add_argument("--max-batch", type=int, default=4, help="server's --max-batch (default 4)")
    parser.add_argument("--queue-size", type=int, default=16, help="server's --queue-size (default 16)")
    parser.add_argument("--screenshot", metavar="PNG", help="also save a screenshot of the page here")
    parser.add_argument("--work", help="folder for the random model (default: a temp folder)")
    return parser.parse_args(argv)


# ---- model and photos -----------------------------------------------------------------------------


def random_model(folder: Path, size: int) -> Path:
    """U-Net/ResNet34 with random weights (what `cityseg train` builds by default): right for speed only."""
    import torch

    from cityseg.classes import class_set
    from cityseg.models import ModelInfo, create_model, save_model

    torch.manual_seed(0)
    classes = class_set("train19")
    net = create_model("unet", "resnet34", num_classes=classes.num_classes).eval()
    return save_model(net, folder, ModelInfo.from_class_set("unet", "resnet34", classes, (size, size)))


def load_photos(data: Path, count: int) -> tuple[list[bytes], str]:
    """``count`` JPEG photos: Cityscapes photo halves when ``data`` holds pairs, else generated scenes."""
    from PIL import Image

    photos: list[np.ndarray] = []
    if data.is_dir():
        from cityseg.pairs import discover, read_pair

        paths = [p for split in discover(data).values() for p in split][:count]
        photos = [read_pair(path)[0] for path in paths]
        source = f"Cityscapes photo halves ({photos[0].shape[1]}x{photos[0].shape[0]})" if photos else ""
    if not photos:
        from cityseg.synth import render_scene

        photos = [render_scene(np.random.default_rng(seed))[0] for seed in range(count)]
        source = f"generated scenes ({photos[0].shape[1]}x{photos[0].shape[0]})"
    encoded = []
    for photo in photos:
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, format="JPEG", quality=90)
        encoded.append(buffer.getvalue())
    return encoded, source


def export_int8(model: Path, photos: list[bytes], work: Path) -> None:
    """fp32 and int8 ONNX beside the random model, calibrated on the photos (agreement is meaningless here)."""
    from cityseg.export import ExportOptions, export_onnx

    calibration = work / "calibration"
    calibration.mkdir(parents=True, exist_ok=True)
    for index, photo in enumerate(photos):
        (calibration / f"{index}.jpg").write_bytes(photo)
    options = ExportOptions(
        quantize="int8", calibration=calibration, calibration_images=16, check_images=4, min_agreement=0
    )
    export_onnx(model, options)


# ---- the server process ---------------------------------------------------------------------------


def start_server(model: str, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "cityseg.cli", "serve", model, "--port", "0", "--log-level", "warning"]
    command += ["--backend", args.backend, "--threads", str(args.threads), "--max-batch", str(args.max_batch)]
    command += ["--queue-size", str(args.queue_size)] + (["--onnx", args.onnx] if args.onnx else [])
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        found = re.search(r"http://\S+:\d+/", line)
        if found:
            return process, found.group(0)
    process.kill()
    sys.exit(f"the server did not start:\n{''.join(seen)}")


def rss_mib(pid: int) -> tuple[float, float]:
    """(resident set size, its peak) of a process in MiB, from /proc (Linux)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


# ---- the load -------------------------------------------------------------------------------------


def run_load(url: str, photos: list[bytes], requests: int, clients: int, output: str) -> dict:
    """``requests`` POSTs from ``clients`` threads; per request: client latency, status, server latency, batch."""
    import httpx

    counter = itertools.count()
    lock = threading.Lock()
    results: list[tuple[float, int, float, int]] = []  # (client s, status, server ms, batch size)
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(timeout=TIMEOUT_S) as session:
            while True:
                with lock:
                    index = next(counter)
                if index >= requests:
                    return
                started = time.perf_counter()
                try:
                    response = session.post(
                        f"{url}predict?format={output}",
                        content=photos[index % len(photos)],
                        headers={"Content-Type": "image/jpeg"},
                    )
                    elapsed = time.perf_counter() - started
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if output == "json" and response.status_code == 200:
                    body = response.json()
                    server_ms, batch = body["latency_ms"], body["batch_size"]
                else:
                    server_ms = float(response.headers.get("x-latency-ms", "nan"))
                    batch = int(response.headers.get("x-batch-size", "0"))
                if response.status_code != 200:
                    failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
                with lock:
                    results.append((elapsed, response.status_code, server_ms, batch))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    ok = [r for r in results if r[1] == 200]
    client_ms = [1000 * r[0] for r in ok] or [float("nan")]
    return {
        "wall_s": wall,
        "ok": len(ok),
        "errors": requests - len(ok),
        "failures": failures[:5],
        "throughput": len(ok) / wall,
        "client_p50": statistics.median(client_ms),
        "client_p95": float(np.percentile(client_ms, 95)),
        "server_p50": statistics.median([r[2] for r in ok]) if ok else float("nan"),
        "mean_batch": statistics.fmean([r[3] for r in ok]) if ok else float("nan"),
    }


# ---- the screenshot -------------------------------------------------------------------------------


def screenshot(url: str, path: Path) -> None:
    """Open the page in headless Chromium, drop a generated street scene on it, save the page (a small PNG)."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from cityseg.synth import render_scene

    photo, _ = render_scene(np.random.default_rng(7), (256, 512))  # a 2:1 street scene, as Cityscapes frames are
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=92)
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1000, "height": 560},
        )
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function("document.getElementById('model').textContent.includes('classes')")
            page.set_input_files("#file", {"name": "street.jpg", "mimeType": "image/jpeg", "buffer": buffer.getvalue()})
            page.wait_for_selector("#legend li")
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    image = Image.open(io.BytesIO(shot)).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)
    print(f"screenshot: {path} ({path.stat().st_size / 1024:.0f} KiB, {image.width}x{image.height})")


# ---- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    import httpx

    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        if args.model:
            model, described = args.model, f"{args.model} (trained)"
        else:
            model = str(random_model(work / "unet-resnet34", args.size))
            described = f"U-Net/ResNet34 at {args.size}x{args.size}, random weights (speed only)"
        photos, source = load_photos(Path(args.data), args.photos)
        if args.backend == "onnx" and not args.model:
            export_int8(Path(model), photos, work)
            described += ", ONNX int8 (agreement check off: random weights)"
        process, url = start_server(model, args)
        try:
            for index in range(args.warmup):
                photo = photos[index % len(photos)]
                httpx.post(f"{url}predict", content=photo, headers={"Content-Type": "image/jpeg"}, timeout=TIMEOUT_S)
            rss_before, _ = rss_mib(process.pid)
            if args.screenshot:
                screenshot(url, Path(args.screenshot))
            if args.requests > 0:
                load = run_load(url, photos, args.requests, args.clients, args.format)
                rss_after, rss_peak = rss_mib(process.pid)
                health = httpx.get(f"{url}health").json()
                report(args, described, source, health, load, rss_before, rss_after, rss_peak)
        finally:
            process.terminate()
            process.wait(30)


def report(args, described, source, health, load, rss_before, rss_after, rss_peak) -> None:
    print(f"model:    {described}; backend {health['backend']}, {args.threads} threads, max batch {args.max_batch}")
    print(f"photos:   {args.photos} {source}, JPEG q90; response {args.format}")
    print(
        f"machine:  {platform.processor() or platform.machine()}, {_cores()} cores, Python {platform.python_version()}"
    )
    print(f"load:     {args.requests} requests from {args.clients} concurrent clients on loopback")
    print()
    print(
        "| backend | requests | clients | throughput | latency p50 | latency p95 | server p50 | mean batch | errors "
        "| RSS before | RSS after | RSS peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {health['backend']} | {args.requests} | {args.clients} | {load['throughput']:.1f} req/s "
        f"| {load['client_p50']:.0f} ms | {load['client_p95']:.0f} ms | {load['server_p50']:.0f} ms "
        f"| {load['mean_batch']:.2f} | {load['errors']} | {rss_before:.0f} MiB | {rss_after:.0f} MiB "
        f"| {rss_peak:.0f} MiB |"
    )
    for failure in load["failures"]:
        print(f"failure: {failure}")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
