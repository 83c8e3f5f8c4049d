"""Soak: ``cityseg serve`` on loopback for half an hour under 8 clients, then SIGTERM.

The server is the command as a user runs it (``cityseg serve MODEL --port 0``: its default backend, threads,
queue and limits; the built-in model unless ``--model``), in its own process with a fresh ``TMPDIR`` so the
temporary files it leaves can be counted. Eight client threads send, for ``--minutes``, a mix drawn per request:

    photo    a street scene of one of many sizes (240p to 2048x1024, JPEG or PNG), label PNG or JSON answer
    video    a 2-second generated drive (MP4), one client only (the server segments one video at a time)
    bad      an empty body, text, a cut JPEG, an unknown route, a bad query parameter: each must be a 4xx
    cut      an upload whose connection closes half-way through the body (no answer to read)

Each minute it records requests served, latency p50/p95/p99 of the photos, answers by status and error code,
and the server's resident memory, open file descriptors and threads (from /proc). At the end: temporary files
left, then SIGTERM with photos in flight: whether they were answered, whether a request sent after the signal
is refused cleanly (connection refused, not a hang), the exit status and the seconds to exit.

Usage:
    python benchmarks/soak.py [--minutes 30] [--clients 8] [--model cityscapes-fpn-lite0] [--json FILE]
    python benchmarks/soak.py --table FILE      # the per-minute table of a saved run, as markdown
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import numpy as np

PHOTO_SIZES = [(240, 320), (256, 512), (480, 640), (512, 1024), (720, 1280), (1024, 2048)]  # (H, W)
MIX = {"photo": 0.82, "bad": 0.12, "cut": 0.06}  # per request; client 0 also sends a video every VIDEO_EVERY s
VIDEO_EVERY = 20.0


def bodies(seed: int = 0) -> dict[str, list]:
    """The requests' bodies, made once: photos of every size and format, a video, bad bodies."""
    from PIL import Image

    from cityseg.synth import render_scene
    from cityseg.synth.drive import write_drive

    photos = []
    for index, (height, width) in enumerate(PHOTO_SIZES):
        photo, _ = render_scene(np.random.default_rng([seed, index]), size=(256, 512))
        scene = Image.fromarray(photo).resize((width, height))
        for fmt, media in (("JPEG", "image/jpeg"), ("PNG", "image/png")):
            buffer = io.BytesIO()
            scene.save(buffer, format=fmt)
            photos.append((buffer.getvalue(), media, f"{width}x{height} {fmt}"))
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "drive.mp4"
        write_drive(video, seconds=2, fps=10, size=(128, 256), seed=seed)
        videos = [video.read_bytes()]
    jpeg = photos[0][0]
    bad = [  # (path, query, body, media type)
        ("predict", "", b"", "image/jpeg"),
        ("predict", "", b"just some text", "text/plain"),
        ("predict", "", jpeg[: len(jpeg) // 3], "image/jpeg"),
        ("predict", "", os.urandom(2000), "application/octet-stream"),
        ("nowhere", "", b"x", "image/jpeg"),
        ("predict", "?format=gif", jpeg, "image/jpeg"),
    ]
    return {"photos": photos, "videos": videos, "bad": bad}


class Server:
    """``cityseg serve`` in a process of its own, its output in a log file."""

    def __init__(self, model: str, folder: Path):
        self.tmp = folder / "tmp"
        self.tmp.mkdir()
        self.log = (folder / "serve.log").open("w")
        env = {**os.environ, "TMPDIR": str(self.tmp)}
        command = [str(Path(sys.executable).parent / "cityseg"), "serve", model, "--port", "0"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)
        line = self.process.stdout.readline()
        found = re.search(r"http://[\d.]+:(\d+)/", line)
        if not found:
            raise SystemExit(f"the server did not start: {line!r}; see {folder / 'serve.log'}")
        self.port = int(found.group(1))
        self.url = f"http://127.0.0.1:{self.port}/"
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.log.write(line)

    def resources(self) -> dict:
        """Resident memory (MiB), open file descriptors and threads of the server process, from /proc."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
        threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
        return {"rss_mib": round(rss, 1), "fds": len(os.listdir(f"/proc/{self.process.pid}/fd")), "threads": threads}


class Tally:
    """Answers and latencies by minute, shared by the clients."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latency: dict[int, list[float]] = defaultdict(list)
        self.answers: dict[int, Counter] = defaultdict(Counter)
        self.unexpected: list[str] = []

    def add(self, minute: int, kind: str, outcome: str, seconds: float | None = None, problem: str | None = None):
        with self.lock:
            self.answers[minute][f"{kind} {outcome}"] += 1
            if seconds is not None:
                self.latency[minute].append(seconds)
            if problem:
                self.unexpected.append(problem)


def client(index: int, server: Server, made: dict, tally: Tally, started: float, seconds: float) -> None:
    rng = random.Random(index)
    last_video = started - rng.random() * VIDEO_EVERY
    with httpx.Client(base_url=server.url, timeout=120) as http:
        while (now := time.monotonic()) - started < seconds:
            minute = int((now - started) // 60)
            if index == 0 and now - last_video > VIDEO_EVERY:
                last_video = now
                response = http.post("predict/video", content=made["videos"][0], headers={"Content-Type": "video/mp4"})
                ok = response.status_code == 200
                tally.add(minute, "video", str(response.status_code), None, None if ok else f"video {response.text}")
                continue
            kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
            if kind == "photo":
                body, media, name = rng.choice(made["photos"])
                query = rng.choice(["", "?format=json"])
                sent = time.monotonic()
                response = http.post(f"predict{query}", content=body, headers={"Content-Type": media})
                ok = response.status_code == 200
                tally.add(minute, "photo", str(response.status_code), time.monotonic() - sent,
                          None if ok else f"photo {name}: {response.status_code} {response.text[:200]}")  # fmt: skip
            elif kind == "bad":
                path, query, body, media = rng.choice(made["bad"])
                response = http.post(f"{path}{query}", content=body, headers={"Content-Type": media})
                code = response.json().get("error", "?")
                good = 400 <= response.status_code < 500
                tally.add(minute, "bad", f"{response.status_code} {code}", None,
                          None if good else f"bad request {path}{query}: {response.status_code}")  # fmt: skip
            else:
                cut_upload(server.port, rng.choice(made["photos"])[0])
                tally.add(minute, "cut", "sent")


def cut_upload(port: int, body: bytes) -> None:
    """Headers and half the body of a photo, then the connection closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body[: len(body) // 2])


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def shutdown(server: Server, made: dict) -> dict:
    """SIGTERM with 8 photos in flight: were they answered, is a later request refused, how long to exit."""
    results: list[int | str] = []

    def send():
        body, media, _ = made["photos"][-2]  # the largest JPEG: the longest to serve
        try:
            results.append(httpx.post(f"{server.url}predict", content=body, headers={"Content-Type": media},
                                      timeout=60).status_code)  # fmt: skip
        except httpx.HTTPError as exc:
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5  # until the server holds them all (admitted: counted in /health's in_flight)
    while (
        httpx.get(f"{server.url}health", timeout=5).json()["in_flight"] < len(threads) and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        after = httpx.get(f"{server.url}health", timeout=5).status_code
    except httpx.ConnectError:
        after = "connection refused"
    except httpx.HTTPError as exc:
        after = type(exc).__name__
    code = server.process.wait(60)
    exit_s = time.monotonic() - signalled
    for thread in threads:
        thread.join(60)
    return {"in_flight": Counter(map(str, results)), "after_signal": after, "exit_code": code, "exit_s": exit_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--model", default="cityscapes-fpn-lite0")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table", type=Path, help="print the per-minute table of this saved report")
    args = parser.parse_args()
    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return 0
    made = bodies()
    with tempfile.TemporaryDirectory(prefix="soak-") as name:
        server = Server(args.model, Path(name))
        tally, samples = Tally(), []
        started = time.monotonic()
        workers = [
            threading.Thread(target=client, args=(i, server, made, tally, started, args.minutes * 60), daemon=True)
            for i in range(args.clients)
        ]
        for worker in workers:
            worker.start()
        while any(worker.is_alive() for worker in workers):
            time.sleep(min(60.0, max(1.0, args.minutes * 60 / 30)))
            samples.append({"t": round(time.monotonic() - started), **server.resources()})
        for worker in workers:
            worker.join()
        left = sorted(str(p.relative_to(server.tmp)) for p in server.tmp.rglob("*"))
        ending = shutdown(server, made)
    report = summarise(tally, samples, left, ending, args)
    print(json.dumps(report, indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0 if not tally.unexpected and not left and ending["exit_code"] == 0 else 1


def markdown(report: dict) -> str:
    """Per minute: requests, photo latency percentiles, and the server's memory, descriptors and threads."""
    rows = ["| minute | requests | p50 ms | p95 ms | p99 ms | RSS MiB | open fds | threads |", "|" + "---:|" * 8]
    samples = len(report["rss_mib"])
    for m in report["per_minute"]:
        i = min(m["minute"] - 1, samples - 1)  # the sample taken at the end of that minute
        rows.append(
            f"| {m['minute']} | {m['requests']} | {m['p50_ms']} | {m['p95_ms']} | {m['p99_ms']} | "
            f"{report['rss_mib'][i]} | {report['fds'][i]} | {report['threads'][i]} |"
        )
    return "\n".join(rows)


def summarise(tally: Tally, samples: list[dict], left: list[str], ending: dict, args) -> dict:
    minutes = sorted(tally.answers)
    per_minute = [
        {
            "minute": m + 1,
            "requests": sum(tally.answers[m].values()),
            "p50_ms": round(percentile(tally.latency[m], 50), 1),
            "p95_ms": round(percentile(tally.latency[m], 95), 1),
            "p99_ms": round(percentile(tally.latency[m], 99), 1),
        }
        for m in minutes
    ]
    first = [s for m in minutes[:5] for s in tally.latency[m]]
    last = [s for m in minutes[-5:] for s in tally.latency[m]]
    warm = next((s for s in samples if s["t"] >= min(300, args.minutes * 60 / 6)), samples[0] if samples else None)
    answers = sum((tally.answers[m] for m in minutes), Counter())
    return {
        "minutes": args.minutes,
        "clients": args.clients,
        "model": args.model,
        "requests": sum(answers.values()),
        "answers": dict(sorted(answers.items())),
        "unexpected": tally.unexpected[:20],
        "unexpected_count": len(tally.unexpected),
        "p95_first_5_min_ms": round(percentile(first, 95), 1),
        "p95_last_5_min_ms": round(percentile(last, 95), 1),
        "rss_after_warmup_mib": warm and warm["rss_mib"],
        "rss_end_mib": samples[-1]["rss_mib"] if samples else None,
        "fds": [s["fds"] for s in samples],
        "threads": [s["threads"] for s in samples],
        "rss_mib": [s["rss_mib"] for s in samples],
        "per_minute": per_minute,
        "temporary_files_left": left,
        "shutdown": ending,
    }


if __name__ == "__main__":
    raise SystemExit(main())
