"""``cityseg predict``, ``cityseg export`` and ``cityseg serve``: what a trained model is used for."""

from __future__ import annotations

import argparse

from cityseg import defaults
from cityseg.cli.registry import add_backend, add_mask_side, add_model, add_tta, command, options_from_args

# ---- predict, export (predict/export helper) ---------------------------------------------------


def _add_count(parser: argparse.ArgumentParser, flag: str, default: int, help: str) -> None:
    """A whole-number flag (``N`` in the usage line)."""
    parser.add_argument(flag, type=int, default=default, metavar="N", help=help)


def _add_predict(parser: argparse.ArgumentParser) -> None:
    add_model(parser, classes=True)
    parser.add_argument(
        "inputs", metavar="INPUT", nargs="+", help="image or video files, folders or glob patterns ('*.jpg', '*.mp4')"
    )
    parser.add_argument(
        "--out", metavar="DIR", default=defaults.PREDICT_OUT, help="output folder (created; default %(default)s)"
    )
    add_backend(parser)
    parser.add_argument(
        "--ids",
        choices=defaults.ID_KINDS,
        default=defaults.ID_KINDS[0],
        help="values of the label PNG: the model's class indices (train ids for a train19 model; default), "
        "Cityscapes train ids, or official label ids",
    )
    parser.add_argument("--pairs", action="store_true", help="inputs are pair images: segment their photo half")
    add_mask_side(parser)
    _add_count(parser, "--batch-size", defaults.PREDICT_BATCH, "images per forward pass (default %(default)s)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all cores; video: all but 1)")
    parser.add_argument(
        "--alpha",
        type=float,
        default=defaults.OVERLAY_ALPHA,
        help="weight of the colours in the overlay (default %(default)s)",
    )
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable images (listed at the end)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_tta(parser)
    video = parser.add_argument_group("videos (mp4, mkv, avi, mov, webm: NAME_overlay.mp4 each)")
    video.add_argument("--frames", action="store_true", help="also write each frame's label PNG (NAME_frames/)")
    video.add_argument(
        "--every", type=int, default=1, metavar="N", help="run the model on 1 frame in N, labels held in between"
    )
    video.add_argument(
        "--smooth",
        type=float,
        metavar="A",
        help="average class probabilities over frames, weight A (0-1] for the newest, to stop flicker (default off)",
    )


@command("predict", "segment photos (label and colour PNG, overlay JPEG) and videos (overlay MP4)", _add_predict)
def _run_predict(args: argparse.Namespace) -> int:
    from cityseg.engine import PredictOptions
    from cityseg.predict import predict_files
    from cityseg.video import VideoOptions

    options = PredictOptions(
        backend=args.backend,
        onnx_file=args.onnx,
        threads=args.threads,
        flip=args.flip or args.tta,
        scales=defaults.TTA_SCALES if args.tta else (1.0,),
        batch_size=args.batch_size,
        ids=args.ids,
        pairs=args.pairs,
        mask_side=args.mask_side,
        skip_bad=args.skip_bad,
        progress=not args.no_progress,
        overlay_alpha=args.alpha,
        classes=args.model_classes,
    )
    video = VideoOptions(frames=args.frames, every=args.every, smooth=args.smooth)
    summary = predict_files(args.model, args.inputs, args.out, options, video)
    print(summary)
    return 0


def _add_export(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    parser.add_argument(
        "--format", choices=defaults.FORMATS, default=defaults.FORMATS[0], help="export format (default %(default)s)"
    )
    parser.add_argument("--out", metavar="FILE", help="fp32 ONNX file (default MODEL/model.onnx; int8 beside it)")
    parser.add_argument(
        "--quantize", choices=defaults.QUANTIZE, help="also write a static int8 model (MODEL/model.int8.onnx)"
    )
    parser.add_argument("--calibration", metavar="DIR", help="real photos to calibrate int8 on (or pairs with --pairs)")
    parser.add_argument("--pairs", action="store_true", help="DIR holds pair images: photo half used, masks scored")
    add_mask_side(parser)
    _add_count(parser, "--calibration-images", defaults.CALIBRATION_IMAGES, "default %(default)s")
    _add_count(parser, "--check-images", defaults.CHECK_IMAGES, "held-out images (default %(default)s)")
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=100 * defaults.MIN_AGREEMENT,
        metavar="PERCENT",
        help="refuse a model whose argmax agrees with its reference on fewer pixels "
        f"(default {100 * defaults.MIN_AGREEMENT:g})",
    )
    parser.add_argument("--opset", type=int, default=defaults.DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    parser.add_argument(
        "--calibrate-method",
        choices=defaults.CALIBRATION_METHODS,
        default=defaults.CALIBRATION_METHODS[0],
        help="default %(default)s",
    )
    parser.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor, not per channel")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit weights (pre-VNNI CPUs)")
    parser.add_argument("--qoperator", action="store_true", help="QOperator format instead of QDQ")
    parser.add_argument(
        "--keep-fp32",
        metavar="PREFIX",
        action="append",
        help="leave nodes whose name starts with PREFIX in fp32, e.g. /encoder (repeatable); default: every "
        "layer int8, or the encoder in fp32 if that falls under --min-agreement",
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed of the calibration/check split (default 0)")


@command("export", "export a model to ONNX (optionally int8), checked against PyTorch before writing", _add_export)
def _run_export(args: argparse.Namespace) -> int:
    from cityseg.extras import require

    require("onnx", "cityseg export")
    from cityseg.export import ExportOptions, export_onnx

    options = options_from_args(
        ExportOptions,
        args,
        min_agreement=args.min_agreement / 100,
        per_channel=not args.per_tensor,
        quant_format="qoperator" if args.qoperator else "qdq",
        keep_fp32=tuple(args.keep_fp32) if args.keep_fp32 else None,
    )
    report = export_onnx(args.model, options, out=args.out)
    print(report)
    return 0


# ---- serve (serve helper) ----------------------------------------------------------------------

# the server's limits: flag, type, default, metavar, what it limits
SERVE_LIMITS = (
    ("--max-batch", int, defaults.MAX_BATCH, "N", "images per forward pass"),
    ("--queue-size", int, defaults.QUEUE_SIZE, "N", "requests in flight before 503 busy"),
    ("--max-upload-mb", float, defaults.MAX_UPLOAD_MB, "MB", "largest upload"),
    ("--max-megapixels", float, defaults.MAX_MEGAPIXELS, "MP", "largest image area"),
    ("--max-side", int, defaults.MAX_SIDE, "PX", "longest side"),
)


def _add_serve(parser: argparse.ArgumentParser) -> None:
    add_model(parser, classes=True)
    add_backend(parser)
    parser.add_argument(
        "--host", default=defaults.DEFAULT_HOST, help="address to listen on (default %(default)s: this machine)"
    )
    parser.add_argument(
        "--port", type=int, default=defaults.DEFAULT_PORT, help="TCP port; 0 picks a free one (default %(default)s)"
    )
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads for the model (default: all cores)")
    parser.add_argument(
        "--token",
        help="bearer token every request needs (default: $CITYSEG_TOKEN); required on any address but loopback",
    )
    parser.add_argument("--no-auth", action="store_true", help="serve beyond this machine without a token, on purpose")
    for flag, kind, default, metavar, what in SERVE_LIMITS:
        parser.add_argument(flag, type=kind, default=default, metavar=metavar, help=f"{what} (default {default:g})")
    parser.add_argument(
        "--log-level", choices=defaults.LOG_LEVELS, default=defaults.DEFAULT_LOG_LEVEL, help="default %(default)s"
    )


@command("serve", "serve a model: a web page to try photos, and an HTTP API (POST /predict)", _add_serve)
def _run_serve(args: argparse.Namespace) -> int:
    from cityseg.extras import require

    require("serve", "cityseg serve")  # before importing it: the app module needs FastAPI at import
    from cityseg.engine import PredictOptions
    from cityseg.serve import ServeSettings, serve

    settings = ServeSettings(
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=int(args.max_megapixels * 1e6),
        max_side=args.max_side,
        queue_size=args.queue_size,
        max_batch=args.max_batch,
    )
    serve(
        args.model,
        host=args.host,
        port=args.port,
        options=PredictOptions(
            backend=args.backend, onnx_file=args.onnx, threads=args.threads, classes=args.model_classes
        ),
        settings=settings,
        log_level=args.log_level,
        token=args.token,
        no_auth=args.no_auth,
    )
    return 0
