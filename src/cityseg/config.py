"""The one typed configuration: every setting of a run, with its default and meaning, in one place.

A :class:`Config` loads from YAML (``Config.from_yaml``), takes ``section.key=value`` overrides
(``Config.override``, what ``--set`` uses), checks every value against its declared type, and is
saved with each run (``Config.to_yaml``) so the run can be reproduced or resumed.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cityseg.defaults import LABEL_FORMATS, MASK_SIDES, SPLITS
from cityseg.errors import CitysegError


@dataclass
class DataConfig:
    root: str = ""  # dataset root: pairs (Kaggle/pix2pix or a folder), the Cityscapes release, or photos + labels
    mask_side: str = "right"  # which half of each pair image holds the colour mask: right | left
    label_format: str = "auto"  # what the labels are: auto (the layout's own) | pairs (the pairs' colour masks, read
    # by labels.method) | labelids | trainids | color (label images beside the photos: KITTI, BDD100K, images/+labels/)
    split: str = "official"  # official: train folder split into train/val, val folder = test | blocks: the same with
    # whole cities (blocks of the file order) held out, so validation and test are streets never trained on |
    # seed: pooled 64/16/20
    block_size: int = 100  # split=blocks where cities cannot be told: images per block of the file order
    val_fraction: float = 0.1  # share of the train folder held out for validation with split=official
    test_fraction: float = 0.1  # split=official on a dataset without a val folder: share of it held out as test set
    seed_fractions: tuple[float, float, float] = (0.64, 0.16, 0.20)  # train/val/test shares with split=seed
    limit: int = 0  # use at most this many images of each folder (0 = all); for quick runs
    size: tuple[int, int] = (256, 256)  # (height, width) the model trains on
    eval_window: tuple[int, int] = (0, 0)  # validation/test: (height, width) windows slid over the data.size image,
    # overlapping logits averaged (e.g. the training crop); (0, 0) = one forward pass over the whole image
    eval_overlap: float = 0.33  # share of each eval_window shared with the next one (0 <= overlap < 1)
    eval_flip: bool = False  # validation/test: also segment the mirror image and average the logits (flip TTA)
    eval_scales: tuple[float, ...] = (1.0,)  # validation/test: segment the image rescaled by each factor and average
    # the logits at its own size (multi-scale TTA, e.g. 0.75,1,1.25); (1.0,) = one scale
    batch_size: int = 8  # images per optimiser step (per device)
    rare_class_temperature: float = 0.0  # > 0: rare-class sampling: each training image is drawn by first drawing a
    # class with probability softmax((1 - pixel share) / T), then an image holding it (DAFormer uses 0.01); 0 = off
    workers: int = 2  # DataLoader worker processes (0 = load in the training process)
    cache_dir: str = ""  # where labels are cached; "" = $XDG_CACHE_HOME/cityseg (or ~/.cache/cityseg)
    skip_bad: bool = False  # skip unreadable or malformed images (counted and listed) instead of stopping


@dataclass
class LabelConfig:
    method: str = "palette"  # palette: nearest official colour | kmeans: K clusters of mask colours
    # auto: the dataset's own (an export's class list, else train19) | train19 | categories | labelids | voc21 |
    # a class table FILE.yaml, or an export's class list (labelmap.txt, _classes.csv, COCO json); kmeans: its own
    classes: str = "auto"
    k: int = 10  # clusters for method=kmeans
    kmeans_pixels: int = 200_000  # mask pixels sampled (seeded) to fit K-Means
    max_distance: float = 45.0  # RGB distance within which a mask pixel may be an official colour (a luma check
    # applies too); farther pixels are JPEG blends, filled from their neighbours
    seed: int = 0  # seeds the K-Means pixel sample and initialisation


@dataclass
class AugmentConfig:
    enabled: bool = True  # false: photos and masks are only resized to data.size (the original project)
    hflip: bool = True  # random horizontal flip (street scenes are left-right symmetric)
    scale: tuple[float, float] = (0.5, 2.0)  # random rescale range (relative to data.size) before the crop
    crop: tuple[int, int] = (0, 0)  # (height, width) of training crops from the rescaled image; 0 = data.size
    color_jitter: float = 0.2  # brightness/contrast/saturation strength (0 = off)
    final_epochs: int = 0  # the last N epochs of the planned run train on whole photos at data.size (no rescale or
    # crop; flips and jitter stay), so the network ends on the view it is tested on


@dataclass
class ModelConfig:
    arch: str = "unet"  # any segmentation-models-pytorch architecture name
    encoder: str = "resnet34"  # any smp/timm encoder name
    encoder_weights: str = "none"  # imagenet | none | path to a safetensors file or state dict (offline: none/path)
    encoder_depth: int = 0  # encoder stages used (3-5; 0 = the architecture's default); fewer = smaller, faster
    decoder_width: int = 0  # decoder channels (0 = default); unet-like decoders halve it at each block, down to 8
    # a trained model to start from (a run, model folder, built-in name or Hub owner/name): its whole network,
    # architecture included; '' = a new network, its encoder filled as encoder_weights says
    init: str = ""
    init_head: str = ""  # written by train with init: kept (the model's own classes) or new (other classes)
    init_map_head: bool = True  # init to other Cityscapes classes: the new head from the model's classes they group


@dataclass
class OptimConfig:
    optimizer: str = "adamw"  # adam | adamw | sgd
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 1e-4  # decoupled for adamw, L2 for adam and sgd
    momentum: float = 0.9  # sgd only
    schedule: str = "poly"  # none | cosine | poly: per-step decay to 0 over the run (or over the budget, see train)
    warmup_steps: int = 0  # linear warm-up from lr/100 over this many steps before the schedule
    loss: str = "ce"  # loss terms joined by +: ce (cross-entropy) | dice | ohem (cross-entropy of the hard pixels)
    ohem_threshold: float = 0.7  # loss ohem: pixels whose true class has a probability under this are hard
    ohem_min_kept: float = 0.1  # loss ohem: share of the labelled pixels kept at least (the hardest)
    fused: bool = False  # adam/adamw: one fused kernel updates every parameter (faster on CPU)
    class_weights: bool = False  # weight cross-entropy by inverse log class frequency
    init_lr_scale: float = 0.1  # with model.init: the trained layers it gives learn at lr x this, a new head at lr


@dataclass
class TrainConfig:
    max_epochs: int = 50  # upper bound; early stopping or the budget may end the run sooner
    max_steps: int = 0  # > 0: stop after this many optimiser steps, the LR schedule spanning them (0 = epochs decide)
    patience: int = 10  # early-stopping patience, in validation rounds
    monitor: str = "val_mIoU"  # metric for early stopping and the best checkpoint
    monitor_mode: str = "max"  # max for accuracy/IoU, min for a loss
    budget_minutes: float = 0.0  # wall-clock budget, validation included (0 = none); the schedule is fitted to it
    budget_probe_steps: int = 20  # with a budget: training steps timed before the schedule length is first set
    precision: str = "32-true"  # Lightning precision, e.g. bf16-mixed
    accelerator: str = "auto"  # cpu | gpu | auto
    devices: str = "auto"  # number of devices, or auto
    num_nodes: int = 1  # machines taking part (multi-node DDP)
    strategy: str = "auto"  # auto | ddp | ddp_spawn ...
    ema_decay: float = 0.0  # > 0: validate, test and save an exponential moving average of the weights (0.999)
    ema_start_step: int = 0  # with ema_decay: steps of plain training before the average starts
    channels_last: bool = False  # NHWC memory layout for the network (faster convolutions on recent GPUs)
    seed: int = 0  # seeds splits, weight init, augmentation and loader workers (per process)
    threads: int = 0  # torch CPU threads per process (0 = cores available / processes on this node)
    log_every_n_steps: int = 10  # how often step-level values reach the loggers
    runs_dir: str = "runs"  # each run writes runs_dir/<timestamp>/; runs_dir/latest points at the newest
    progress: bool = True  # show the progress bar


@dataclass
class Config:
    """Every setting of a run, in sections; the defaults are the project's best general recipe (configs/default.yaml).

    Example:
        >>> config = Config.from_yaml("seed").override(["train.max_epochs=3"])
        >>> config.model.encoder, config.train.max_epochs
        ('resnet34', 3)
    """

    data: DataConfig = field(default_factory=DataConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        config = cls()
        for section, entries in (values or {}).items():
            if section not in _sections(config):
                raise CitysegError(f"unknown config section {section!r}; valid: {', '.join(_sections(config))}")
            if not isinstance(entries, dict):
                raise CitysegError(f"config section {section!r} must be a mapping of keys to values")
            for key, value in entries.items():
                config.set(f"{section}.{key}", value)
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        """Load a YAML file; a bare preset name (``seed``, ``default``, ``demo``) loads the packaged preset."""
        import yaml

        if str(path) in PRESETS and not Path(path).exists():
            path = preset_path(str(path))
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise CitysegError(f"cannot read config {path}: {exc.strerror}; check the path") from None
        except UnicodeDecodeError as exc:
            raise CitysegError(f"config {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise CitysegError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(values, dict):
            raise CitysegError(f"config {path} must be a mapping of sections (data:, model:, ...), not a list or value")
        try:
            return cls.from_dict(values)
        except CitysegError as exc:
            raise CitysegError(f"config {path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        def plain(value):
            return list(value) if isinstance(value, tuple) else value

        return {s: {k: plain(v) for k, v in dataclasses.asdict(getattr(self, s)).items()} for s in _sections(self)}

    def to_yaml(self, path: str | Path | None = None) -> str:
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            from cityseg.files import atomic_write_text

            atomic_write_text(path, text)
        return text

    # ---- overrides ----------------------------------------------------------------------------
    def set(self, dotted_key: str, value: Any) -> None:
        """Set ``section.key`` to ``value`` (a Python value or a string from the command line), type-checked."""
        section_name, _, key = dotted_key.partition(".")
        if section_name not in _sections(self) or not key:
            raise CitysegError(f"unknown setting {dotted_key!r}; settings look like train.max_epochs")
        section = getattr(self, section_name)
        hints = typing.get_type_hints(type(section))
        if key not in hints:
            valid = ", ".join(f"{section_name}.{k}" for k in hints)
            raise CitysegError(f"unknown setting {dotted_key!r}; valid in {section_name}: {valid}")
        value = _coerce(dotted_key, value, hints[key])
        valid = choices(dotted_key)
        if valid is not None and value not in valid:
            raise CitysegError(f"bad value {value!r} for {dotted_key}; choose one of: {', '.join(valid)}")
        setattr(section, key, value)

    def override(self, assignments: list[str]) -> Config:
        """Apply ``key=value`` strings, as given to ``--set``."""
        for assignment in assignments or []:
            key, sep, value = assignment.partition("=")
            if not sep:
                raise CitysegError(f"--set expects key=value, got {assignment!r}")
            self.set(key.strip(), value.strip())
        return self


# Settings that take one of a few words: checked when set, so a typo fails before any work starts. A callable
# is asked on first use: the registries it reads live in modules that import torch only when they build something.
def _optimizer_names() -> tuple[str, ...]:
    from cityseg.optim import OPTIMIZERS

    return tuple(OPTIMIZERS)


def _schedule_names() -> tuple[str, ...]:
    from cityseg.optim import SCHEDULES

    return tuple(SCHEDULES)


def _loss_names() -> tuple[str, ...]:
    from cityseg.loss_registry import loss_names

    return loss_names()


CHOICES: dict[str, tuple[str, ...] | typing.Callable[[], tuple[str, ...]]] = {
    "data.mask_side": MASK_SIDES,
    "data.label_format": LABEL_FORMATS,
    "data.split": SPLITS,
    "optim.optimizer": _optimizer_names,
    "optim.schedule": _schedule_names,
    "optim.loss": _loss_names,
    "train.monitor_mode": ("max", "min"),
}


def choices(dotted_key: str) -> tuple[str, ...] | None:
    """The values ``dotted_key`` may take, or None when it takes any value of its type."""
    entry = CHOICES.get(dotted_key)
    return entry() if callable(entry) else entry


PRESETS = ("default", "seed", "demo", "cpu-hour")  # configs shipped inside the package (cityseg/configs/NAME.yaml)


def preset_path(name: str) -> Path:
    """The packaged YAML file of preset ``name`` (see PRESETS), found after any install.

    Example:
        >>> Config.from_yaml(preset_path("seed")).train.max_epochs
        22
    """
    from importlib import resources

    if name not in PRESETS:
        raise CitysegError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)} or give a YAML file")
    return Path(str(resources.files("cityseg") / "configs" / f"{name}.yaml"))


def _sections(config: Config) -> list[str]:
    return [f.name for f in dataclasses.fields(config)]


# the number types a setting can have: what the error says is expected, and the values refused outright (a
# bool is an int to Python, 2.5 is no integer, but 3.0 is)
_NUMBERS = {
    int: ("an integer", lambda value: isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())),
    float: ("a number", lambda value: isinstance(value, bool)),
}


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Convert ``value`` (possibly a string from the command line) to ``hint`` or raise a clear error."""
    origin = typing.get_origin(hint)
    try:
        if origin is tuple:
            items = value
            if isinstance(value, str):
                items = [v for v in value.strip("()[] ").split(",") if v.strip()]
            args = typing.get_args(hint)
            if len(args) == 2 and args[1] is Ellipsis:  # tuple[float, ...]: any number of values, at least one
                if len(items) == 0:
                    raise ValueError("expected at least one value")
                return tuple(_coerce(key, v, args[0]) for v in items)
            if len(items) != len(args):
                raise ValueError(f"expected {len(args)} values")
            return tuple(_coerce(key, v, a) for v, a in zip(items, args, strict=True))
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if hint in _NUMBERS:
            expected, refused = _NUMBERS[hint]
            if refused(value):
                raise ValueError(f"expected {expected}")
            try:
                return hint(value)
            except ValueError:
                raise ValueError(f"expected {expected}") from None
        if hint is str:
            if isinstance(value, dict | list):
                raise ValueError("expected text")
            return "" if value is None else str(value)
    except (TypeError, ValueError) as exc:
        raise CitysegError(f"bad value {value!r} for {key}: {exc}") from None
    return value
