"""Segmenting a video frame by frame: decode thread -> model in the calling thread -> encode thread.

::

    FrameReader (thread)   PyAV demux + decode, RGB, upright; the frames the model needs go through
                           decode_image's array path and preprocess, exactly as a photo does
        | Pipe (4 frames)
    segment_frames         batches of frames through Segmenter.logits (backend, flip, scales); optional
    (calling thread)       smoothing of the class probabilities
        | Pipe (4 frames)
    FrameSink (thread)     labels back to the frame's size (edge_labels_at_size: the photos' labels), the
                           overlay (the photos' colours and blending, a legend), PyAV encode + mux,
                           optionally each frame's label PNG

The model's thread runs the network alone, the stage that costs most; the labels' resize, the next
costliest, is the encoding thread's, so that the two threads share the work about equally on 2 cores.
:func:`iter_video` resizes in the calling thread, as its caller wants labels.

The pipes are bounded, so memory does not grow with the video's length, and the stages overlap: FFmpeg,
PyTorch, ONNX Runtime, OpenVINO and PIL release the GIL in their heavy calls, so the slowest stage sets
the pace. The overlay is written under a temporary name and renamed when complete: an interrupted run
leaves nothing half-written. A video damaged part-way is segmented up to its last good frame, the
overlay of those frames is kept, and a :class:`~cityseg.video.summary.VideoCutShortError` says so.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cityseg.defaults import PREDICT_BATCH
from cityseg.engine import PredictOptions, Segmenter, preprocess
from cityseg.errors import CitysegError
from cityseg.files import atomic_path, ensure_writable_dir
from cityseg.inference import edge_labels_at_size
from cityseg.outputs import PredictSummary, ids_encoder, output_stems
from cityseg.video.overlay import Legend, draw_overlay
from cityseg.video.reader import DecodedFrame, FrameReader
from cityseg.video.summary import FlickerMeter, VideoCutShortError, VideoSummary, VideoTooLongError
from cityseg.video.writer import Encoder, FrameSink, OverlayVideoWriter, choose_encoder

QUIET = PredictOptions(progress=False)  # predict_video's default: the options' defaults, without a progress bar


@dataclass(frozen=True)
class VideoOptions:
    """What a caller chooses for a video, beside the :class:`~cityseg.engine.PredictOptions` it shares with
    photos (ids, overlay alpha, batch size, progress bar).

    Args:
        frames: also write every frame's label PNG (``STEM_frames/000000_<ids>.png``).
        every: run the model on one frame in ``every`` and hold its labels for the frames in between.
        smooth: weight of the newest frame in a moving average of the class probabilities, in (0, 1]
            (:class:`ProbabilitySmoother`); 0 or None: off.
        encoder: the video encoder (None: the best there is, :func:`cityseg.video.writer.choose_encoder`).
        max_frames: refuse a video with more frames than this (``cityseg serve``'s length limit); None: any length.
    """

    frames: bool = False
    every: int = 1
    smooth: float | None = None
    encoder: Encoder | None = None
    max_frames: int | None = None


def video_model_threads(threads: int | None = None) -> int:
    """The model's CPU threads for a video: ``threads`` if given, else all cores but one (at least one).

    The decoding and encoding threads (and FFmpeg's and x264's own) need a core too. A model whose team of
    threads shares every core with them waits at each layer for whichever member is not running: on 2 busy
    cores the PyTorch model took 0.3-1.6 s a frame on 2 threads against 77-130 ms on one, and the int8 model
    cost more CPU on 2 threads for no speed (ONNX Runtime 31 against 17 ms, OpenVINO 25 against 20;
    ``benchmarks/video_steps.py``).
    """
    if threads:
        return int(threads)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def check_video_settings(every: int, smooth: float | None, batch_size: int) -> float | None:
    """Validate ``every``, ``smooth`` and ``batch_size``; returns the smoothing weight, None when off.

    Raises:
        CitysegError: ``every`` or ``batch_size`` below 1, ``smooth`` outside [0, 1].
    """
    if int(every) != every or every < 1:
        raise CitysegError(f"--every must be a whole number of at least 1, not {every}")
    if batch_size < 1:
        raise CitysegError(f"--batch-size must be at least 1, not {batch_size}")
    if smooth is None or smooth == 0:
        return None
    if not 0 < smooth <= 1:
        raise CitysegError(f"--smooth must be above 0 and at most 1 (0 = off), not {smooth}")
    return None if smooth == 1 else float(smooth)  # weight 1: the newest frame alone, as without smoothing


class ProbabilitySmoother:
    """An exponential moving average of the class probabilities of successive segmented frames.

    ``mean = weight * softmax(logits) + (1 - weight) * mean``: a class must win over a few frames before
    a pixel changes to it, which stops labels flickering on a still scene; a low weight also trails
    behind motion (a passing car's colours lag it), so the weight trades steadiness for lag. It works at
    the model's resolution, before the labels are resized to the frame.

    Args:
        weight: of the newest frame, in (0, 1].
    """

    def __init__(self, weight: float):
        self.weight = float(weight)
        self.mean: np.ndarray | None = None  # (C, h, w)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """(C, h, w) logits -> (C, h, w) smoothed probabilities (NumPy: no torch threads beside the model's)."""
        probabilities = np.array(logits, dtype=np.float32)  # softmax over the classes, in place
        probabilities -= probabilities.max(axis=0)
        np.exp(probabilities, out=probabilities)
        probabilities /= probabilities.sum(axis=0)
        if self.mean is not None and self.mean.shape == probabilities.shape:
            probabilities *= self.weight
            probabilities += (1 - self.weight) * self.mean
        self.mean = probabilities  # a new array each frame: the encoding thread may still read the last one
        return probabilities


class _Clock:
    busy_s = 0.0


def segment_frames(
    segmenter: Segmenter,
    reader: FrameReader,
    smoother: Callable[[np.ndarray], np.ndarray] | None = None,
    batch_size: int = PREDICT_BATCH,
    clock: _Clock | None = None,
    resize: bool = True,
) -> Iterator[tuple[DecodedFrame, np.ndarray]]:
    """(frame, (H, W) uint8 labels) for every frame ``reader`` gives, in order.

    The frames the reader prepared (its ``wanted`` ones) go through the model, ``batch_size`` at a time;
    the others take the labels of the last segmented frame before them (the same array). With ``resize``
    False the labels are left to the caller: each frame comes with its (C, h, w) scores at the model's size
    (logits, or smoothed probabilities), for :func:`cityseg.inference.edge_labels_at_size`.
    """
    clock = clock or _Clock()
    pending: list[DecodedFrame] = []  # frames waiting for a batch; the first is always a segmented one
    held: np.ndarray | None = None
    for frame in reader:
        if frame.prepared is None and not pending:
            yield frame, held
            continue
        pending.append(frame)
        if sum(item.prepared is not None for item in pending) == batch_size:
            held = yield from _label_pending(segmenter, pending, smoother, clock, resize)
            pending = []
    if pending:
        yield from _label_pending(segmenter, pending, smoother, clock, resize)


def _label_pending(segmenter, pending, smoother, clock, resize) -> Iterator[tuple[DecodedFrame, np.ndarray]]:
    """Run the model on the prepared frames of ``pending``, then yield all of them labelled; returns the last labels."""
    began = time.perf_counter()
    keys = [frame for frame in pending if frame.prepared is not None]
    logits = segmenter.logits(np.stack([frame.prepared for frame in keys]))  # (B, C, h, w)
    labels = {}
    for frame, scores in zip(keys, logits, strict=True):
        scores = smoother(scores) if smoother else scores
        labels[frame.index] = edge_labels_at_size(scores, frame.rgb.shape[:2]) if resize else scores
    clock.busy_s += time.perf_counter() - began
    current = None
    for frame in pending:
        current = labels.get(frame.index, current)
        yield frame, current
    return current


def _open_reader(
    segmenter: Segmenter, path: str | os.PathLike, every: int, max_frames: int | None = None
) -> FrameReader:
    """A reader that prepares one frame in ``every`` for the model: decode_image's array path, then preprocess."""

    def prepare(index: int, rgb: np.ndarray) -> np.ndarray:
        return preprocess(segmenter.open(rgb).image, segmenter.info, segmenter.torch_free)

    return FrameReader(path, prepare=prepare, wanted=lambda index: index % every == 0, max_frames=max_frames)


def iter_video(
    segmenter: Segmenter,
    path: str | os.PathLike,
    every: int = 1,
    smooth: float | None = None,
    batch_size: int = PREDICT_BATCH,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Segment a video frame by frame: yields (RGB (H, W, 3) uint8 frame, (H, W) uint8 labels) in order.

    The labels are those :func:`predict_video` writes with the same settings. Frames between two segmented
    ones (``every`` > 1) share the earlier one's labels array: copy it before changing it. Decoding runs
    in a thread ahead of the loop; breaking out of the loop stops it.

    Raises:
        CitysegError: at the first frame, for a file that cannot be read as a video; after the last good
            frame, for a file damaged or cut short part-way.
    """
    weight = check_video_settings(every, smooth, batch_size)
    with _open_reader(segmenter, path, every) as reader:
        smoother = ProbabilitySmoother(weight) if weight else None
        for frame, labels in segment_frames(segmenter, reader, smoother, batch_size):
            yield frame.rgb, labels
    if reader.frames == 0:
        raise _no_frames(reader)
    if reader.failure:
        raise CitysegError(f"{reader.info.path} is corrupt or truncated after frame {reader.frames}: {reader.failure}")


def _no_frames(reader: FrameReader) -> CitysegError:
    if reader.failure:
        return CitysegError(f"cannot decode any frame of {reader.info.path}: {reader.failure}; the file is damaged")
    return CitysegError(f"{reader.info.path} holds no frames (a zero-length video); nothing to segment")


def predict_video(
    segmenter: Segmenter,
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    video: VideoOptions | None = None,
    options: PredictOptions | None = None,
    stem: str | None = None,
) -> VideoSummary:
    """Segment a video and write ``STEM_overlay.mp4`` (and with ``frames``, ``STEM_frames/000000_<ids>.png`` ...).

    The overlay keeps the video's frame rate and size (an odd width or height is padded by one pixel) and
    shows the class colours over each frame with a legend of the classes present; it is H.264 where the
    FFmpeg build has it (:func:`cityseg.video.writer.choose_encoder`).

    Example:
        >>> summary = predict_video(segmenter, "drive.mp4", "out", VideoOptions(every=2, smooth=0.5))  # doctest: +SKIP

    Args:
        segmenter: the model.
        path: the video file (mp4, mkv, avi, mov, webm: anything FFmpeg reads).
        out_dir: the output folder (created).
        video: label PNGs per frame, ``every``, ``smooth``, the encoder, a frame limit (default: ``VideoOptions()``).
        options: what is shared with photos: ``ids`` (what the label PNGs hold, see
            :func:`cityseg.outputs.ids_encoder`), ``overlay_alpha``, ``batch_size`` (frames per forward pass) and
            ``progress`` (a bar counting frames); default :data:`QUIET`, the defaults without a progress bar.
        stem: the output name (default: the file's stem).

    Returns:
        A :class:`~cityseg.video.summary.VideoSummary`.

    Raises:
        CitysegError: bad settings, an unwritable folder, a file that is not a readable video, no frames.
        VideoCutShortError: the file is damaged or cut short part-way; the good frames were written first.
        VideoTooLongError: more than ``max_frames`` frames; nothing is written.
    """
    video, options = video or VideoOptions(), options or QUIET
    weight = check_video_settings(video.every, video.smooth, options.batch_size)
    to_ids, suffix = ids_encoder(segmenter.info, options.ids)
    folder = ensure_writable_dir(out_dir)
    stem = stem or Path(path).stem
    overlay_path = folder / f"{stem}_overlay.mp4"
    chosen = video.encoder or choose_encoder()
    began = time.perf_counter()
    with _open_reader(segmenter, path, video.every, video.max_frames) as reader:
        summary = VideoSummary(
            source=reader.info.path, overlay=overlay_path, backend=str(segmenter.backend), codec=chosen.label,
            fps=float(reader.info.fps), every=video.every, smooth=weight,
        )  # fmt: skip
        frame_dir = ensure_writable_dir(folder / f"{stem}_frames") if video.frames else None
        try:
            with atomic_path(overlay_path) as tmp:
                writer = OverlayVideoWriter(tmp, reader.info.fps, chosen, shown_as=overlay_path)
                stages = _Stages(options, weight, (frame_dir, to_ids, suffix) if frame_dir else None)
                _run_stages(segmenter, reader, writer, summary, stages)
        finally:
            if frame_dir is not None:
                with contextlib.suppress(OSError):
                    frame_dir.rmdir()  # only if empty: nothing was written
    summary.wall_s = time.perf_counter() - began
    summary.frame_dir = frame_dir
    _add_notes(summary, reader, writer)
    if reader.failure:
        raise VideoCutShortError(
            f"{summary.source} is corrupt or truncated after frame {reader.frames} ({reader.failure}); "
            f"the {summary.frames} good frames were segmented into {overlay_path}",
            summary,
        )
    return summary


@dataclass(frozen=True)
class _Stages:
    """What the stages of one video use beside the model, the reader and the writer."""

    options: PredictOptions  # overlay_alpha, batch_size, progress
    weight: float | None  # the smoothing weight (check_video_settings); None: off
    label_pngs: tuple[Path, Callable[[np.ndarray], np.ndarray], str] | None  # (folder, ids function, suffix)


def _run_stages(
    segmenter: Segmenter, reader: FrameReader, writer: OverlayVideoWriter, summary: VideoSummary, stages: _Stages
) -> None:
    """Segment ``reader``'s frames into ``writer`` through the encoding thread, filling ``summary``."""
    from tqdm.auto import tqdm

    classes, options = segmenter.class_set, stages.options
    legend: Legend | None = None  # made on the first frame, whose height sets its font
    flicker = FlickerMeter()

    def draw(rgb: np.ndarray, labels: np.ndarray):
        nonlocal legend
        legend = legend or Legend(classes, rgb.shape[0])
        return draw_overlay(rgb, labels, classes, options.overlay_alpha, legend)

    resized: list = [None, None]  # the last scores and their labels: frames held by --every share both

    def to_labels(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if scores is not resized[0]:
            resized[:] = [scores, edge_labels_at_size(scores, size)]
        return resized[1]

    clock = _Clock()
    total = reader.info.expected_frames
    disable = None if options.progress else True
    with tqdm(total=total, desc=reader.info.path.name, unit="frame", disable=disable) as bar:

        def on_frame(index: int, labels: np.ndarray) -> None:
            flicker.update(labels)
            bar.update(1)

        sink = FrameSink(writer, draw, on_frame, stages.label_pngs, resize=to_labels)
        try:
            smoother = ProbabilitySmoother(stages.weight) if stages.weight else None
            frames = segment_frames(segmenter, reader, smoother, options.batch_size, clock, resize=False)
            for frame, scores in frames:
                if frame.index == 0:
                    summary.size = (frame.rgb.shape[1], frame.rgb.shape[0])
                summary.segmented += frame.prepared is not None
                sink.put(frame.index, frame.rgb, scores)
            if reader.frames == 0:
                raise _no_frames(reader)
            if reader.over_limit:
                raise VideoTooLongError(f"{reader.info.path} has more than {reader.max_frames} frames, the limit")
            sink.finish()
        except BaseException:
            sink.abort()
            raise
    summary.frames = writer.frames
    summary.label_pngs = sink.pngs_written
    summary.flicker = flicker.share
    summary.stage_s = {"decode": reader.busy_s, "model": clock.busy_s, "encode": sink.busy_s}


def _add_notes(summary: VideoSummary, reader: FrameReader, writer: OverlayVideoWriter) -> None:
    summary.notes += reader.info.notes
    if reader.info.variable_rate:
        summary.notes.append(
            f"variable frame rate: the overlay shows its frames evenly at the average {summary.fps:.4g} fps "
            "(same frames and length, the timestamps are not kept)"
        )
    if writer.padded and writer.size is not None:
        width, height = summary.size
        summary.notes.append(
            f"{width}x{height} is odd: H.264 in yuv420p needs an even size, so the overlay is "
            f"{writer.size[0]}x{writer.size[1]} (last column or row repeated); the label PNGs keep {width}x{height}"
        )


def predict_videos(
    segmenter: Segmenter,
    videos: Sequence[Path],
    summary: PredictSummary,
    options: PredictOptions | None = None,
    video: VideoOptions | None = None,
) -> None:
    """:func:`predict_video` for each of ``videos`` into ``summary.out_dir``, recorded in ``summary``
    (:func:`cityseg.predict.predict_files` calls it for the videos among its inputs).

    With ``options.skip_bad`` a video that fails is listed in ``summary.skipped`` and the next one goes on;
    otherwise its error stops the run (after the good frames of a damaged one were written).
    """
    options = options or PredictOptions()
    for path, stem in zip(videos, output_stems(list(videos)), strict=True):
        try:
            result = predict_video(segmenter, path, summary.out_dir, video, options, stem=stem)
        except CitysegError as exc:
            if isinstance(exc, VideoCutShortError):
                summary.videos.append(exc.summary)
                summary.written.append(exc.summary.overlay)
            if not options.skip_bad:
                raise
            summary.skipped.append((str(path), str(exc)))
            continue
        summary.videos.append(result)
        summary.written.append(result.overlay)
