"""Defaults and choices shared by the commands and the modules behind them.

They live here, in a module that imports nothing, because ``cityseg --help`` shows them: the command
line reads them without loading numpy, PIL or torch, and the modules that use them (predict, export,
serve, splits ...) import them from here, so the two cannot drift apart. Defaults of the run settings
are not repeated here: they are the :class:`cityseg.config.Config` dataclass defaults.
"""

from __future__ import annotations

# ---- data --------------------------------------------------------------------------------------
MASK_SIDES = ("right", "left")  # the half of a pair image that holds the colour mask
SPLITS = ("official", "blocks", "seed")  # the values of data.split (cityseg.splits)
SPLIT_NAMES = ("train", "val", "test")  # the image sets a split makes
LABEL_METHODS = ("palette", "kmeans")  # the labellers of cityseg.labels (LABELLERS)
CLASS_SET_CHOICES = ("train19", "categories", "labelids")  # the class sets of cityseg.classes (CLASS_SETS)
# what a dataset's labels are (data.label_format): auto = the layout's own; cityseg.label_formats reads them
LABEL_FORMATS = ("auto", "pairs", "labelids", "trainids", "color")
# the dataset layouts cityseg reads and cityseg synth --layout writes (cityseg.layouts.LAYOUTS, and pairs)
DATASET_LAYOUTS = (
    "pairs", "kitti", "bdd100k", "acdc", "darkzurich", "voc", "cvat-cityscapes", "roboflow", "coco-panoptic", "coco",
    "split-folders", "images",
)  # fmt: skip
EVAL_SPLITS = (*SPLIT_NAMES, "all")  # cityseg evaluate --split: a split of the run's kind, or every labelled image

# ---- synth and label ---------------------------------------------------------------------------
SYNTH_SCENES = 100  # scenes cityseg synth writes
LABEL_FIGURE = "label_figure.png"  # where cityseg label --show draws its figure

# ---- demo --------------------------------------------------------------------------------------
DEMO_OUT = "demo-output"  # the demo's output folder

# ---- predict -----------------------------------------------------------------------------------
DEFAULT_BACKEND = (
    "auto"  # ONNX Runtime on an fp32 model.onnx if the folder has one, else torch (backends.choose_backend)
)
ID_KINDS = ("classes", "trainids", "labelids")  # what the label PNG holds; see outputs.ids_encoder()
PREDICT_BATCH = 1  # images per forward pass
PREDICT_OUT = "predictions"  # where cityseg predict writes when --out is not given
OVERLAY_ALPHA = 0.5  # weight of the class colours over the photo

# ---- export ------------------------------------------------------------------------------------
FORMATS = ("onnx",)
QUANTIZE = ("int8",)
DEFAULT_OPSET = 17  # the TorchScript exporter's well-trodden opset; ONNX Runtime runs every op of it in int8
CALIBRATION_IMAGES = 64  # photos the int8 ranges are measured on
CHECK_IMAGES = 16  # held-out photos both checks run on
MIN_AGREEMENT = 0.99  # least share of pixels whose class must match the reference model
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")  # the first is the default
QUANT_FORMATS = ("qdq", "qoperator")  # the first is the default

# ---- serve -------------------------------------------------------------------------------------
MAX_UPLOAD_MB = 20.0  # largest request body, in MiB
MAX_MEGAPIXELS = 40.0  # largest image, width x height in millions of pixels (a 7700x5200 photo)
MAX_SIDE = 10_000  # longest side in pixels, whatever the area
QUEUE_SIZE = 16  # requests in flight (reading, decoding, waiting or running); the next one gets 503
MAX_BATCH = 4  # images one forward pass may take from the queue
MAX_VIDEO_SECONDS = 60.0  # longest video POST /predict/video segments (about a minute of CPU per 20 s of 720p)
DEFAULT_HOST = "127.0.0.1"  # loopback: reachable from this machine only, unless --host says otherwise
DEFAULT_PORT = 8000
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")  # uvicorn's
DEFAULT_LOG_LEVEL = "info"

# ---- test-time augmentation ---------------------------------------------------------------------
TTA_SCALES = (0.75, 1.0, 1.25)  # --tta: these scales, each with its mirror image (as MMSegmentation's aug-test)

# ---- train ------------------------------------------------------------------------------------------
RESUME_FROM = ("last", "best")  # the checkpoints --resume RUN --from may name (cityseg.training.checkpoints)
