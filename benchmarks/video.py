"""Video speed on this CPU: a generated 1280x720, 30 fps drive segmented end to end, frame by frame.

End to end is what ``cityseg predict MODEL drive.mp4`` does: decode (PyAV), preprocess, the model,
labels back to 1280x720, the overlay with its legend, and H.264 encoding, in three overlapping threads.
For each backend the table gives frames per second, the real-time factor (1 keeps up with the camera)
and each stage's share of the busy time; then the same with ``--every 2``; then the peak memory
(resident set) of a fresh process segmenting 10 s and 60 s of video, which should be equal within 10%:
frames stream through bounded queues, so memory does not grow with the video's length.

    python benchmarks/video.py                          # 20 s drive; torch, onnx, openvino; memory at 10 and 60 s
    python benchmarks/video.py --seconds 4 --memory-seconds 2,6     # a quick check that it runs
    python benchmarks/video.py --model runs/latest      # a trained model instead of random weights

Speed does not depend on the weights, so by default nothing is trained: the cpu-hour architecture
as ``configs/cpu-hour.yaml`` has it (FPN, timm-tf_efficientnet_lite0 encoder, decoder width 128, its input size:
320x320 since 2026-12-05, 256x256 before) is built with random weights,
saved, and exported to ONNX and int8 (calibrated on frames of the drive; with random weights the int8
agreement check means nothing, so it is not enforced) for the onnx and openvino backends. The drive comes
from ``cityseg.synth.drive`` (rendered at ``--render-scale`` of the size and scaled up, since rendering,
not segmenting, would otherwise take most of the run). ``--work DIR`` keeps the model and videos for the
next run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np


def recipe_network(recipe: str = "cpu-hour") -> tuple[str, str, int, tuple[int, int]]:
    """(arch, encoder, decoder width, input size) of a recipe (a preset or YAML file), so the benchmark follows it."""
    from cityseg.config import Config

    config = Config.from_yaml(recipe)
    return config.model.arch, config.model.encoder, config.model.decoder_width, tuple(config.data.size)


ARCH, ENCODER, DECODER_WIDTH, INPUT_SIZE = recipe_network()
SOURCE_ENCODER = {"preset": "fast", "crf": "18"}  # the drive itself: close to the rendered frames
CALIBRATION_FRAMES = 24


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder, run folder or runs/latest (default: cpu-hour, random weights)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the drive (default 20)")
    parser.add_argument("--fps", type=int, default=30, help="frame rate (default 30)")
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the video (default 1280x720)")
    parser.add_argument("--render-scale", type=float, default=0.5, help="drive rendered at this scale (default 0.5)")
    parser.add_argument("--backends", default="torch,onnx,openvino", help="comma-separated (default all three)")
    parser.add_argument("--every", type=int, default=2, help="the --every figure (0: skip; default 2)")
    parser.add_argument(
        "--threads", type=int, default=0, help="model threads (default 0: cityseg's choice for video, cores - 1)"
    )
    parser.add_argument(
        "--light",
        default="128:256x256,64:256x256,64:192x192",
        help="lighter networks, each DECODER_WIDTH:HxW (random weights, int8, fastest backend; '' skips)",
    )
    parser.add_argument("--memory-seconds", default="10,60", help="video lengths for peak memory ('' skips)")
    parser.add_argument("--memory-backend", default="onnx", help="backend of the memory runs (default onnx)")
    parser.add_argument("--seed", type=int, default=0, help="the drive's seed")
    parser.add_argument("--work", help="folder for the model and videos, kept (default: a temporary folder)")
    parser.add_argument("--child-memory", metavar="VIDEO", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="onnx", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---- the model ----------------------------------------------------------------------------------


def random_model(folder: Path, decoder_width: int = DECODER_WIDTH, input_size: tuple[int, int] = INPUT_SIZE) -> Path:
    """The cpu-hour network (or a lighter one) with random weights, saved as a model folder (reused if there)."""
    if (folder / "cityseg.json").is_file():
        return folder
    import torch

    from cityseg.classes import class_set
    from cityseg.config import ModelConfig
    from cityseg.models import ModelInfo, create_model, network_options, save_model

    torch.manual_seed(0)
    options = network_options(ModelConfig(arch=ARCH, encoder=ENCODER, decoder_width=decoder_width))
    net = create_model(ARCH, ENCODER, num_classes=19, encoder_weights="none", **options).eval()
    info = ModelInfo.from_class_set(ARCH, ENCODER, class_set("train19"), input_size)
    return save_model(net, folder, info)


def export_int8(model_dir: Path, video: Path, work: Path) -> str:
    """ONNX fp32 and int8 (calibrated on frames of ``video``) into the model folder; says which int8 plan."""
    from cityseg.backends import INT8_ONNX_FILE

    if (model_dir / INT8_ONNX_FILE).is_file():
        return "int8 (exported before)"
    import av

    from cityseg.export import ExportOptions, export_onnx

    frames_dir = work / "calibration"
    frames_dir.mkdir(parents=True, exist_ok=True)
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % 5 == 0:
                frame.to_image().save(frames_dir / f"{index:06d}.jpg", quality=95)
            if len(list(frames_dir.iterdir())) >= CALIBRATION_FRAMES:
                break
    options = ExportOptions(
        quantize="int8", calibration=frames_dir, min_agreement=0.0, calibration_images=20, check_images=4
    )
    report = export_onnx(model_dir, options)
    kept = "encoder fp32" if report.int8_refused else "every layer int8"
    return f"int8, {kept}"


# ---- the videos ---------------------------------------------------------------------------------


def source_encoder():
    """H.264 at high quality for the benchmark's input videos (the overlay uses cityseg's own settings)."""
    from cityseg.video.writer import Encoder

    return Encoder("libx264", "H.264 (libx264)", SOURCE_ENCODER, constant_quality=True)


def drive_video(path: Path, seconds: float, fps: int, size: tuple[int, int], scale: float, seed: int) -> Path:
    """A generated drive (``cityseg.synth.drive``), ``size`` (width, height), rendered at ``scale`` and scaled up."""
    if path.is_file():
        return path
    from PIL import Image

    from cityseg.files import atomic_path
    from cityseg.synth.drive import Drive
    from cityseg.video.writer import OverlayVideoWriter

    width, height = size
    render = (2 * round(height * scale / 2), 2 * round(width * scale / 2))  # (h, w), even
    drive = Drive.plan(seconds=seconds, fps=fps, size=render, seed=seed)
    began = time.perf_counter()
    with atomic_path(path) as tmp:
        writer = OverlayVideoWriter(tmp, Fraction(fps), source_encoder())
        for photo, _ in drive:
            image = Image.fromarray(photo)
            writer.write(image if image.size == size else image.resize(size, Image.Resampling.BILINEAR))
        writer.close()
    print(f"drive: {len(drive)} frames rendered at {render[1]}x{render[0]}, {time.perf_counter() - began:.0f} s")
    return path


def looped_video(source: Path, path: Path, frames: int) -> Path:
    """``frames`` frames of ``source``, looped from its start as often as needed (for the memory runs)."""
    if path.is_file():
        return path
    import av

    from cityseg.files import atomic_path
    from cityseg.video.writer import OverlayVideoWriter

    with atomic_path(path) as tmp:
        writer = None
        while writer is None or writer.frames < frames:
            with av.open(str(source)) as container:
                stream = container.streams.video[0]
                if writer is None:
                    writer = OverlayVideoWriter(tmp, stream.average_rate, source_encoder())
                for frame in container.decode(stream):
                    writer.write(frame.to_image())
                    if writer.frames == frames:
                        break
        writer.close()
    return path


# ---- measuring ----------------------------------------------------------------------------------


def segment(model_dir: Path, video: Path, backend: str, threads: int, out: Path, every: int = 1):
    """``cityseg.video.predict_video`` once, after a short warm-up of the backend; its VideoSummary."""
    from cityseg.engine import Segmenter
    from cityseg.video import VideoOptions, predict_video
    from cityseg.video.pipeline import video_model_threads

    segmenter = Segmenter.from_pretrained(model_dir, backend=backend, threads=video_model_threads(threads))
    warm = np.zeros((1, 3, *segmenter.info.input_size), dtype=np.float32)
    for _ in range(3):
        segmenter.logits(warm)
    segmenter.predict(np.zeros((720, 1280, 3), dtype=np.uint8))  # the imports of preprocessing, once per process
    before = cpu_seconds()
    summary = predict_video(segmenter, video, out, VideoOptions(every=every))
    summary.cpu_ms = 1000 * (cpu_seconds() - before) / max(1, summary.frames)  # the benchmark's own figure
    return summary


def cpu_seconds() -> float:
    """CPU time of this process so far, all threads (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def resident_mib() -> float:
    """This process's resident set now, MiB (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakSampler(threading.Thread):
    """Samples the resident set every 20 ms while running: the peak of what happens meanwhile alone."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.done = resident_mib(), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, resident_mib())


def child_memory(args: argparse.Namespace) -> None:
    """In a fresh process: segment ``--child-memory``; print the resident set before (warmed up) and its peak during."""
    from cityseg.engine import Segmenter
    from cityseg.video import iter_video, predict_video
    from cityseg.video.pipeline import video_model_threads

    segmenter = Segmenter.from_pretrained(args.model, backend=args.backend, threads=video_model_threads(args.threads))
    for index, _ in enumerate(iter_video(segmenter, args.child_memory)):  # warm-up: imports, thread pools, buffers
        if index == 10:
            break
    before = resident_mib()
    sampler = PeakSampler()
    sampler.start()
    with tempfile.TemporaryDirectory() as out:
        summary = predict_video(segmenter, args.child_memory, out)
    sampler.done.set()
    sampler.join()
    print(
        json.dumps(
            {"before_mib": before, "peak_mib": sampler.peak, "frames": summary.frames, "fps": summary.frames_per_s}
        )
    )


def peak_memory(model_dir: Path, video: Path, backend: str, threads: int) -> dict:
    command = [sys.executable, __file__, "--child-memory", str(video), "--model", str(model_dir)]
    command += ["--backend", backend, "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"memory run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def stage_row(name: str, summary) -> str:
    shares = summary.stage_shares
    return (
        f"| {name} | {summary.frames} | {summary.frames_per_s:.1f} | {summary.realtime_factor:.2f}x | "
        f"{100 * shares['decode']:.0f}% | {100 * shares['model']:.0f}% | {100 * shares['encode']:.0f}% | "
        f"{summary.cpu_ms:.0f} | {summary.wall_s:.1f} |"
    )


def speed_table(model_dir: Path, video: Path, args: argparse.Namespace, work: Path) -> list[str]:
    lines = [
        "| backend | frames | frames/s | real time | decode | model | resize + overlay + encode | CPU ms/frame "
        "| seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fastest: tuple[float, str] | None = None
    for backend in [name.strip() for name in args.backends.split(",") if name.strip()]:
        try:
            summary = segment(model_dir, video, backend, args.threads, work / "out" / backend)
        except Exception as exc:  # e.g. OpenVINO not installed: the other rows still count
            lines.append(f"| {backend} | not run: {str(exc).splitlines()[0]} | | | | | | | |")
            continue
        label = summary.backend
        lines.append(stage_row(label, summary))
        print(lines[-1], flush=True)
        if fastest is None or summary.frames_per_s > fastest[0]:
            fastest = (summary.frames_per_s, backend)
    if args.every > 1 and fastest is not None:
        summary = segment(model_dir, video, fastest[1], args.threads, work / "out" / "every", every=args.every)
        lines.append(stage_row(f"{summary.backend}, --every {args.every}", summary))
        print(lines[-1], flush=True)
    for width, size in light_networks(args.light) if fastest is not None else []:
        tag = f"decoder {width}, {size[1]}x{size[0]}"
        light_dir = random_model(work / f"model-d{width}-{size[0]}x{size[1]}", width, size)
        if fastest[1] != "torch":
            export_int8(light_dir, video, work / f"light-{width}-{size[0]}x{size[1]}")
        summary = segment(light_dir, video, fastest[1], args.threads, work / "out" / f"light-{width}-{size[0]}")
        lines.append(stage_row(f"lighter: {tag}, {summary.backend}", summary))
        print(lines[-1], flush=True)
    return lines


def light_networks(text: str) -> list[tuple[int, tuple[int, int]]]:
    """``"64:256x256,64:192x192"`` -> [(64, (256, 256)), (64, (192, 192))]: decoder width and (h, w) input."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            width, size = item.split(":")
            height, across = (int(side) for side in size.lower().split("x"))
            networks.append((int(width), (height, across)))
    return networks


def memory_table(model_dir: Path, source: Path, args: argparse.Namespace, work: Path) -> list[str]:
    lengths = [float(text) for text in args.memory_seconds.split(",") if text.strip()]
    if not lengths:
        return []
    lines = [
        f"| video ({args.memory_backend}) | frames | resident before MiB | peak while segmenting MiB | frames/s |",
        "|---|---|---|---|---|",
    ]
    peaks = []
    for seconds in lengths:
        frames = round(seconds * args.fps)
        video = looped_video(source, work / f"drive-{seconds:g}s.mp4", frames)
        figures = peak_memory(model_dir, video, args.memory_backend, args.threads)
        peaks.append(figures["peak_mib"])
        lines.append(
            f"| {seconds:g} s | {figures['frames']} | {figures['before_mib']:.0f} | {figures['peak_mib']:.0f} | "
            f"{figures['fps']:.1f} |"
        )
        print(lines[-1], flush=True)
    ratio = peaks[-1] / peaks[0]
    lines.append(f"\npeak while segmenting, {lengths[-1]:g} s over {lengths[0]:g} s: {ratio:.3f} (within 10%: 0.9-1.1)")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child_memory:
        child_memory(args)
        return
    width, height = (int(side) for side in args.size.lower().split("x"))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="video-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    began, load_before = time.perf_counter(), os.getloadavg()[0]
    try:
        tag = f"{width}x{height}-{args.fps}fps-{args.seconds:g}s-seed{args.seed}-r{args.render_scale:g}"
        video = drive_video(
            work / f"drive-{tag}.mp4", args.seconds, args.fps, (width, height), args.render_scale, args.seed
        )
        if args.model:
            from cityseg.model_sources import resolve_model_dir

            model_dir, weights = resolve_model_dir(args.model), "trained"
        else:
            model_dir, weights = random_model(work / "model"), "random weights"
        from cityseg.backends import read_model_info

        info = read_model_info(model_dir)  # now: a random model lives in `work`, deleted below
        int8 = export_int8(model_dir, video, work) if {"onnx", "openvino"} & set(args.backends.split(",")) else "-"
        speed = speed_table(model_dir, video, args, work)
        memory = memory_table(model_dir, video, args, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n## Video: {width}x{height} at {args.fps} fps, {args.seconds:g} s generated drive\n")
    print(f"model: {info.arch}/{info.encoder} at {info.input_size[1]}x{info.input_size[0]}, {weights}; ONNX: {int8}")
    from cityseg.video.pipeline import video_model_threads

    threads = video_model_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; model threads {threads}")
    print(f"load average (1 min) before and after: {load_before:.2f}, {os.getloadavg()[0]:.2f}")
    print(f"command: python benchmarks/video.py {' '.join(argv if argv is not None else sys.argv[1:])}\n")
    print("\n".join(speed))
    if memory:
        print()
        print("\n".join(memory))
    print(f"\n(total {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
