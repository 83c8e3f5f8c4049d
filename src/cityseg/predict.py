"""Prediction over files: what ``cityseg predict`` runs. Photos go through the engine a batch at a time,
videos through :mod:`cityseg.video`.

:func:`predict_files` takes files, folders and globs; per photo it writes a label PNG, a colour PNG and an
overlay (:mod:`cityseg.outputs`), per video an overlay MP4 (:func:`cityseg.video.predict_video`). The model
is a :class:`~cityseg.engine.Segmenter` (:mod:`cityseg.engine`); what the caller chooses is one
:class:`~cityseg.engine.PredictOptions`, and for videos one :class:`~cityseg.video.VideoOptions`.

Example:
    >>> options = PredictOptions(ids="labelids", batch_size=4)  # doctest: +SKIP
    >>> print(predict_files("runs/latest", ["photos/", "drive.mp4"], "out", options))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from cityseg.defaults import MASK_SIDES
from cityseg.engine import PredictOptions, Segmenter, open_photo
from cityseg.errors import CitysegError
from cityseg.files import ensure_writable_dir
from cityseg.images import Photo, expand_inputs
from cityseg.outputs import OutputWriter, PredictSummary, ids_encoder, output_stems
from cityseg.video import VideoOptions, predict_videos, split_video_inputs, video_model_threads

# the names from before the engine and the outputs had their own modules stay importable from here
__all__ = ["PredictOptions", "PredictSummary", "Segmenter", "VideoOptions", "ids_encoder", "predict_files"]


def predict_files(
    model: str | os.PathLike | Segmenter,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    options: PredictOptions | None = None,
    video: VideoOptions | None = None,
) -> PredictSummary:
    """Segment image files and write, per image, ``STEM_<ids>.png``, ``STEM_color.png`` and ``STEM_overlay.jpg``.

    The label PNG holds one uint8 id per pixel (see :func:`cityseg.outputs.ids_encoder`), the colour PNG the
    official palette, the overlay the colours blended over the photo; all at the photo's own size, each
    written atomically. Each video among the inputs gets ``STEM_overlay.mp4``.

    Args:
        model: a model folder, run folder, ``runs/latest``, or a loaded :class:`~cityseg.engine.Segmenter`.
        inputs: image and video files, folders and glob patterns.
        out_dir: where outputs go (created).
        options: backend, threads, flip, scales, batch size, ids, pairs, overlay alpha ... (default:
            ``PredictOptions()``); for a loaded Segmenter, which has its own, the backend, ONNX file,
            threads, flip and scales are not used.
        video: for the videos among the inputs: per-frame label PNGs, the model on one frame in ``every``,
            probability smoothing ... (default: ``VideoOptions()``); their ids, overlay alpha, batch size and
            progress bar are those of ``options``.

    Returns:
        A :class:`~cityseg.outputs.PredictSummary` (its ``str`` is the latency summary).
    """
    options = options or PredictOptions()
    if options.batch_size < 1:
        raise CitysegError(f"--batch-size must be at least 1, not {options.batch_size}")
    if options.mask_side not in MASK_SIDES:
        raise CitysegError(f"--mask-side must be right or left, not {options.mask_side!r}")
    inputs, videos = split_video_inputs(inputs, options.pairs)
    threads = options.threads or (video_model_threads() if videos else None)  # decoding and encoding need a core too
    loaded = isinstance(model, Segmenter)
    segmenter = model if loaded else Segmenter.from_options(model, replace(options, threads=threads))
    to_ids, suffix = ids_encoder(segmenter.info, options.ids)  # fails before any image is read
    paths = expand_inputs(inputs) if inputs or not videos else []
    writer = OutputWriter(ensure_writable_dir(out_dir), segmenter.class_set, to_ids, suffix, options.overlay_alpha)
    summary = PredictSummary(writer.out_dir, str(segmenter.backend))
    _predict_photo_files(segmenter, paths, writer, summary, options)
    if videos:
        predict_videos(segmenter, videos, summary, options, video)
    return summary


def _predict_photo_files(
    segmenter: Segmenter, paths: list[Path], writer: OutputWriter, summary: PredictSummary, options: PredictOptions
) -> None:
    """The photo half of :func:`predict_files`, a batch at a time; a bar on a terminal only (``disable=None``)."""
    from tqdm.auto import tqdm

    stems = dict(zip(paths, output_stems(paths), strict=True))
    target = tuple(segmenter.info.input_size)
    disable = None if options.progress and paths else True
    with tqdm(total=len(paths), desc="predict", unit="image", disable=disable) as bar:
        for start in range(0, len(paths), options.batch_size):
            batch = _decode_batch(paths[start : start + options.batch_size], target, options, summary, bar)
            if not batch:
                continue
            labels, times = segmenter.predict_photos([photo for _, photo, _ in batch])
            shared_s = (times.preprocess_s + times.model_s) / len(batch)  # the batch's stages, shared out
            for (path, photo, decode_s), classes, resize_s in zip(batch, labels, times.resize_s, strict=True):
                summary.latency_ms.append(1000 * (decode_s + shared_s + resize_s))
                summary.model_ms.append(1000 * times.model_s / len(batch))
                # the overlay needs the photo at its own size
                full = (
                    photo.image if photo.full_size else open_photo(path, None, options.pairs, options.mask_side).image
                )
                summary.written += writer.write(stems[path], full, classes)
                bar.update(1)


def _decode_batch(
    paths: Sequence[Path], target: tuple[int, int], options: PredictOptions, summary: PredictSummary, bar
) -> list[tuple[Path, Photo, float]]:
    """(path, photo, decode seconds) of each readable file; with ``skip_bad`` the others go to ``summary.skipped``."""
    decoded = []
    for path in paths:
        began = time.perf_counter()
        try:
            photo = open_photo(path, target, pairs=options.pairs, mask_side=options.mask_side)
        except CitysegError as exc:
            if not options.skip_bad:
                raise
            summary.skipped.append((str(path), str(exc)))
            bar.update(1)
            continue
        decoded.append((path, photo, time.perf_counter() - began))
    return decoded
