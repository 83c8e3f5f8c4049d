"""Each step of a 1280x720 video frame alone: CPU milliseconds a frame, one thread, where the video time goes.

``benchmarks/video.py`` runs the whole pipeline (three threads at once); this times its steps one after
the other in one process, on frames of the same generated drive, with the cpu-hour network (random
weights, int8 as ``video.py`` exports it), so each choice of the pipeline can be checked on its own:

- decoding and RGB conversion (PyAV, one thread);
- preprocessing (torch on one thread, as the decoding thread runs it), and the same on two OpenMP
  threads right after an OpenVINO inference in the same process: what it cost before the video threads
  were held to one OpenMP thread;
- the model on each backend, one and two threads;
- labels back to 1280x720: ``labels_at_size`` (photos: bilinear up to 4x), the same capped at 2x (the video
  path before), and ``edge_labels_at_size`` (the video path now), with their agreement with the first;
- the overlay with its legend; the H.264 encoder at three settings (size per frame and PSNR against the
  overlay frames included).

    python benchmarks/video_steps.py                      # 60 frames of a 4 s drive
    python benchmarks/video_steps.py --frames 30 --work DIR

CPU time is the process's (``time.process_time``), so other programs on the machine do not count, but a
busy machine still slows each step somewhat (shared caches, frequency).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import video as bench  # benchmarks/video.py: the drive, the model and its export

ENCODER_SETTINGS = {
    "superfast": {"preset": "superfast", "crf": "23"},
    "ultrafast": {"preset": "ultrafast", "crf": "23"},
    "ultrafast + deblock + CABAC (cityseg)": {"preset": "ultrafast", "deblock": "0:0", "coder": "cabac", "crf": "23"},
}


def cpu_ms(step: Callable[[int], object], count: int) -> float:
    """CPU milliseconds of this process per call of ``step(i)``, i = 0 .. count-1, after one warm-up call."""
    step(0)
    began = time.process_time()
    for index in range(count):
        step(index)
    return 1000 * (time.process_time() - began) / count


def encode_row(name: str, options: dict, overlays: list[np.ndarray]) -> str:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=30, options=options)
        stream.height, stream.width = overlays[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        began = time.process_time()
        for overlay in overlays:
            for packet in stream.encode(av.VideoFrame.from_ndarray(overlay, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        spent = 1000 * (time.process_time() - began) / len(overlays)
    data = buffer.getvalue()
    with av.open(io.BytesIO(data)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    errors = [np.mean((a.astype(np.float32) - b) ** 2) for a, b in zip(decoded, overlays, strict=True)]
    psnr = float(np.mean([10 * np.log10(255**2 / error) for error in errors]))
    size = len(data) / len(overlays) / 1024
    return f"| encode: libx264 {name}, 1 thread | {spent:.1f} | {size:.0f} KiB a frame, PSNR {psnr:.2f} dB |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="frames timed per step (default 60)")
    parser.add_argument("--work", help="folder for the model and the drive, kept (default: temporary)")
    args = parser.parse_args(argv)
    import av
    import torch

    from cityseg.engine import Segmenter, preprocess
    from cityseg.inference import edge_labels_at_size, labels_at_size
    from cityseg.video.overlay import Legend, draw_overlay

    work = Path(args.work or tempfile.mkdtemp(prefix="video-steps-"))
    video = bench.drive_video(work / "drive-1280x720-30fps-4s-seed0-r0.5.mp4", 4, 30, (1280, 720), 0.5, 0)
    model_dir = bench.random_model(work / "model")
    bench.export_int8(model_dir, video, work)
    torch.set_num_threads(1)
    count = args.frames
    rows = ["| step (1280x720 frame) | CPU ms a frame | note |", "|---|---|---|"]
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        packets = iter(container.decode(stream))
        rows.append(f"| decode (H.264, PyAV, 1 thread) | {cpu_ms(lambda i: next(packets), count):.1f} | |")
    with av.open(str(video)) as container:
        raw = [frame for _, frame in zip(range(count), container.decode(video=0), strict=False)]
    rgb = [frame.to_ndarray(format="rgb24") for frame in raw]
    rows.append(f"| to RGB (swscale) | {cpu_ms(lambda i: raw[i].to_ndarray(format='rgb24'), count):.1f} | |")
    segmenter = Segmenter.from_pretrained(model_dir, backend="onnx", threads=1)
    photos = [segmenter.open(frame).image for frame in rgb]
    prepare = cpu_ms(lambda i: preprocess(photos[i], segmenter.info), count)
    rows.append(f"| decode_image (array) + preprocess, torch 1 thread | {prepare:.1f} | as the decoding thread does |")
    rows += contended_preprocess(model_dir, photos, count)
    batch = [preprocess(photo, segmenter.info)[None] for photo in photos]
    for backend in ("torch", "onnx", "openvino"):
        for threads in (1, 2):
            model = Segmenter.from_pretrained(model_dir, backend=backend, threads=threads)
            spent = cpu_ms(lambda i, model=model: model.logits(batch[i]), count)
            rows.append(f"| model: {model.backend}, {threads} thread(s) | {spent:.1f} | |")
    torch.set_num_threads(1)
    logits = [segmenter.logits(x)[0] for x in batch]
    rows += resize_rows(logits, count, labels_at_size, edge_labels_at_size)
    legend = Legend(segmenter.class_set, 720)
    labels = [edge_labels_at_size(scores, (720, 1280)) for scores in logits]
    draw = cpu_ms(lambda i: draw_overlay(rgb[i], labels[i], segmenter.class_set, 0.5, legend), count)
    rows.append(f"| overlay: colours, blend, legend | {draw:.1f} | |")
    overlays = [np.asarray(draw_overlay(rgb[i], labels[i], segmenter.class_set, 0.5, legend)) for i in range(count)]
    rows += [encode_row(name, options, overlays) for name, options in ENCODER_SETTINGS.items()]
    print(f"\n{count} frames of {video.name}; model {model_dir} (random weights)\n")
    print("\n".join(rows))


def contended_preprocess(model_dir: Path, photos: list, count: int) -> list[str]:
    """Preprocessing on 2 OpenMP threads, each call right after an OpenVINO inference (the pipeline before)."""
    import torch

    from cityseg.engine import Segmenter, preprocess

    try:
        model = Segmenter.from_pretrained(model_dir, backend="openvino", threads=2)
    except Exception as exc:  # OpenVINO not installed
        return [f"| preprocess beside OpenVINO | - | not run: {str(exc).splitlines()[0]} |"]
    torch.set_num_threads(2)
    inputs = [preprocess(photo, model.info)[None] for photo in photos]
    spent = 0.0
    for index in range(count):
        model.logits(inputs[index])
        began = time.thread_time()
        preprocess(photos[index], model.info)
        spent += time.thread_time() - began
    torch.set_num_threads(1)
    note = "this thread's CPU alone; torch on 2 OpenMP threads after an OpenVINO inference (the video threads before)"
    return [f"| preprocess, torch 2 threads, beside OpenVINO | {1000 * spent / count:.1f} | {note} |"]


def resize_rows(logits: list[np.ndarray], count: int, labels_at_size, edge_labels_at_size) -> list[str]:
    size = (720, 1280)
    reference = [labels_at_size(scores, size) for scores in logits]
    rows = []
    for name, resize in (
        ("labels_at_size (photos: bilinear up to 4x), torch 1 thread", lambda s: labels_at_size(s, size)),
        ("labels_at_size capped at 2x (the video path before)", lambda s: labels_at_size(s, size, max_scale=2)),
        ("edge_labels_at_size (the video path now)", lambda s: edge_labels_at_size(s, size)),
    ):
        spent = cpu_ms(lambda i, resize=resize: resize(logits[i]), count)
        agree = np.mean([np.mean(resize(s) == r) for s, r in zip(logits, reference, strict=True)])
        rows.append(f"| labels back: {name} | {spent:.1f} | {100 * agree:.3f}% of pixels as labels_at_size |")
    return rows


if __name__ == "__main__":
    main()
