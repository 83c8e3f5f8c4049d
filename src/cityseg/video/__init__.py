"""Street video: segment a drive frame by frame on a CPU, with PyAV (FFmpeg) reading and writing the files.

``cityseg predict MODEL drive.mp4 --out DIR`` writes ``DIR/drive_overlay.mp4`` (the class colours over
each frame, a legend of the classes present, the video's own frame rate and size) and, with ``--frames``,
``DIR/drive_frames/000000_<ids>.png`` per frame. From Python::

    segmenter = Segmenter.from_pretrained("runs/latest")                          # cityseg.engine
    summary = predict_video(segmenter, "drive.mp4", "out", VideoOptions(every=2))  # a VideoSummary
    for frame, labels in iter_video(segmenter, "drive.mp4"):                      # (H, W, 3) and (H, W) uint8
        ...

The modules, one stage each:

- ``reader``: which inputs are videos, opening one (its errors), decoding in a thread;
- ``pipeline``: the model stage, ``--every`` and ``--smooth``, :class:`VideoOptions`, :func:`predict_video`
  and :func:`iter_video`;
- ``overlay``: the photo overlay's colours and blend, and the legend;
- ``writer``: the encoder (H.264 where there is one), odd sizes, the label PNGs, the encoding thread;
- ``pipes``: the bounded queues between the threads; ``summary``: what a run did, and flicker.

PyAV rather than OpenCV or an ``ffmpeg`` subprocess: its wheels carry FFmpeg with libx264, so nothing
else needs installing; it decodes straight to numpy arrays and encodes from them without pipes; it
reports damaged data as exceptions the pipeline can stop at (keeping the good frames); and it releases
the GIL while it decodes and encodes, so those stages overlap the model in threads.
"""

from __future__ import annotations

from cityseg.video.overlay import Legend, draw_overlay
from cityseg.video.pipeline import (
    ProbabilitySmoother,
    VideoOptions,
    check_video_settings,
    iter_video,
    predict_video,
    predict_videos,
    segment_frames,
    video_model_threads,
)
from cityseg.video.reader import FrameReader, VideoInfo, is_video_name, open_video, split_video_inputs
from cityseg.video.summary import FlickerMeter, VideoCutShortError, VideoSummary, VideoTooLongError
from cityseg.video.writer import ENCODERS, Encoder, OverlayVideoWriter, choose_encoder

__all__ = [
    "ENCODERS",
    "Encoder",
    "FlickerMeter",
    "FrameReader",
    "Legend",
    "OverlayVideoWriter",
    "ProbabilitySmoother",
    "VideoCutShortError",
    "VideoInfo",
    "VideoOptions",
    "VideoSummary",
    "VideoTooLongError",
    "check_video_settings",
    "choose_encoder",
    "draw_overlay",
    "is_video_name",
    "iter_video",
    "open_video",
    "predict_video",
    "predict_videos",
    "segment_frames",
    "split_video_inputs",
    "video_model_threads",
]
