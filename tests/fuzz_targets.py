"""Fuzz targets: every reader of untrusted bytes or text, the inputs to start from, and the promise it keeps.

A :class:`Target` is a reader (``read``) and a Hypothesis strategy of inputs (``inputs``): valid files the
project makes (a drawn street scene's photo, pair, label images in every format, a tiny model folder, a
checkpoint, videos from the drive generator) mutated by :func:`mutated` (cut short, bits flipped, bytes
overwritten, inserted or deleted, another file's header spliced in, a header integer made huge, emptied), or
values generated whole for the text formats. :func:`check` holds every input to the promise of the README:

* the reader returns, or raises :class:`~cityseg.errors.CitysegError` whose message is one line naming the input;
* nothing else is raised, and no input takes longer than :data:`SECONDS_PER_INPUT` (a hang is a failure);
* no input makes the process's peak memory grow by more than :data:`MEMORY_PER_INPUT` (decompression bombs);
* the folder the input lies in holds nothing else afterwards (no half-written file).

``tests/test_fuzz.py`` runs each target for a short seeded budget in the suite; ``benchmarks/fuzz.py`` runs the
same targets for minutes. Each input is written to ``FOLDER/input<suffix>`` (a model folder: ``FOLDER/input``).
"""

from __future__ import annotations

import functools
import json
import resource
import signal
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from cityseg.errors import CitysegError
from fuzz_seeds import (
    checkpoint_seeds,
    class_list_seeds,
    class_table_keys,
    class_tables,
    config_keys,
    config_texts,
    export_seeds,
    label_seeds,
    model_seed,
    pair_seeds,
    photo_seeds,
    video_seeds,
)

SECONDS_PER_INPUT = 10.0
MEMORY_PER_INPUT = 512 * 2**20  # bytes of peak resident memory one input may add
SUFFIXES = (".jpg", ".png", ".webp", ".tif", ".bmp", ".gif", ".txt", "")  # wrong extensions are inputs too


class FuzzTimeout(BaseException):
    """An input that ran past its time (a BaseException, so no reader's ``except Exception`` swallows it)."""


class BrokenPromise(AssertionError):
    """An input that the reader answered with something other than a result or a one-line error naming it."""


@dataclass(frozen=True)
class Target:
    """One reader under fuzzing: ``read(input, folder)`` and the strategy of its inputs.

    ``names(input, folder)`` lists the strings of which the error's line must hold one (empty: no name to check).
    """

    name: str
    inputs: Callable[[], st.SearchStrategy]
    read: Callable[[Any, Path], object]
    names: Callable[[Any, Path], tuple[str, ...]] = lambda value, folder: ("input",)


TARGETS: dict[str, Target] = {}


def target(name: str, inputs: Callable[[], st.SearchStrategy], **kwargs) -> Callable:
    """Register the decorated ``read(input, folder)`` as the target ``name``."""

    def register(read: Callable[[Any, Path], object]) -> Callable:
        TARGETS[name] = Target(name, inputs, read, **kwargs)
        return read

    return register


# ---- the property -------------------------------------------------------------------------------------------


@contextmanager
def time_limit(seconds: float):
    def expire(*_):
        raise FuzzTimeout(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def peak_memory() -> int:
    """The process's peak resident memory so far, bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def check(fuzzed: Target, value: Any) -> str | None:
    """Run ``fuzzed`` on ``value`` in a fresh folder and hold it to the promise; the error line it gave, or None.

    Raises:
        BrokenPromise: anything but a result or a one-line :class:`CitysegError` naming the input, a hang, memory
            out of proportion, or a file left beside the input.
    """
    with tempfile.TemporaryDirectory(prefix="fuzz-") as name:
        folder = Path(name)
        peak = peak_memory()
        message = None
        try:
            with time_limit(SECONDS_PER_INPUT):
                fuzzed.read(value, folder)
        except CitysegError as exc:
            message = str(exc)
        except FuzzTimeout as exc:
            raise BrokenPromise(f"{fuzzed.name}: {exc}") from None
        except Exception as exc:
            raise BrokenPromise(f"{fuzzed.name}: {type(exc).__name__}: {exc}") from exc
        grown = peak_memory() - peak
        if grown > MEMORY_PER_INPUT:
            raise BrokenPromise(f"{fuzzed.name}: peak memory grew by {grown / 2**20:.0f} MiB on one input")
        left = sorted(path.name for path in folder.iterdir() if not path.name.startswith("input"))
        if left:
            raise BrokenPromise(f"{fuzzed.name}: files left beside the input: {left}")
        if message is not None:
            lines = message.strip().splitlines()
            if len(lines) != 1:
                raise BrokenPromise(f"{fuzzed.name}: error of {len(lines)} lines: {message!r}")
            names = [name for name in fuzzed.names(value, folder) if name]
            if names and not any(name in message for name in names):
                raise BrokenPromise(f"{fuzzed.name}: error names none of {names}: {message!r}")
        return message


# ---- mutations ------------------------------------------------------------------------------------------------


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed file after 0 to 4 mutations, or (one time in ten) bytes drawn whole."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=4096))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(("cut", "flip", "overwrite", "insert", "delete", "splice", "huge", "empty")))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "cut":
            data = data[:at]
        elif kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at : at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 256))]
        elif kind == "splice":  # another file's header on this one's body
            other = draw(st.sampled_from(seeds))
            cut = draw(st.integers(0, len(other)))
            data = bytearray(other[:cut]) + data[cut:]
        elif kind == "huge":  # a header integer (a width, a length) made enormous
            width = draw(st.sampled_from((2, 4)))
            data[at : at + width] = b"\xff" * (width - 1) + bytes([draw(st.integers(0, 255))])
        elif kind == "empty":
            data = bytearray()
    return bytes(data)


def files(seeds: Callable[[], list[bytes]]) -> Callable[[], st.SearchStrategy]:
    """Inputs ``(bytes, suffix)``: mutated seeds under a drawn file extension (the usual one most of the time)."""

    def inputs() -> st.SearchStrategy:
        made = seeds()
        return st.tuples(mutated(made), st.one_of(st.just(None), st.sampled_from(SUFFIXES)))

    return inputs


def write_tree(files: dict[str, bytes], root: Path) -> Path:
    """Write ``files`` (path relative to ``root`` -> bytes) under ``root``; returns ``root``."""
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return root


def write_input(value: tuple[bytes, str | None], folder: Path, suffix: str) -> Path:
    data, drawn = value
    path = folder / f"input{suffix if drawn is None else drawn}"
    path.write_bytes(data)
    return path


def yaml_texts(valid: Callable[[], list[str]], keys: Callable[[], list[str]]) -> Callable[[], st.SearchStrategy]:
    """Inputs: valid YAML files mutated as text or bytes, or YAML of generated values under real and random keys."""

    def inputs() -> st.SearchStrategy:
        import yaml

        leaves = st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**70), 2**70),
            st.floats(),
            st.text(max_size=20),
            st.sampled_from(["train19", "categories", "road", "#ff0000", "nan", "1e999", "-1", "255", "[1, 2]"]),
        )
        names = st.one_of(st.sampled_from(keys()), st.text(max_size=12))
        values = st.recursive(
            leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=4)
        )
        generated = st.dictionaries(names, values, max_size=6).map(lambda v: yaml.safe_dump(v).encode())
        as_bytes = mutated([text.encode() for text in valid()])
        return st.tuples(st.one_of(generated, as_bytes), st.just(None))

    return inputs


# ---- the targets -------------------------------------------------------------------------------------------------


@target("photo", files(photo_seeds))
def read_photo(value, folder: Path):
    from cityseg.images import decode_image

    return decode_image(write_input(value, folder, ".jpg"), target_size=(32, 64))


@target("upload", lambda: mutated(photo_seeds()), names=lambda value, folder: ())
def read_upload(value: bytes, folder: Path):
    """The server's decoder: a refusal is an HTTP 4xx answer with a one-line message, never a 5xx."""
    from cityseg.serve.settings import RequestError, ServeSettings
    from cityseg.serve.upload import decode_upload

    try:
        return decode_upload(value, (32, 64), ServeSettings(max_pixels=2_000_000, max_side=4096))
    except RequestError as exc:
        if not 400 <= exc.status < 500:
            raise
        raise CitysegError(exc.message) from None


def arrays() -> st.SearchStrategy:
    from hypothesis.extra import numpy as hnp

    dtypes = st.sampled_from([np.uint8, np.uint16, np.float32, np.bool_, np.int64])
    shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)
    return hnp.arrays(dtypes, shapes)


@target("array", arrays, names=lambda value, folder: ())
def read_array(value: np.ndarray, folder: Path):
    from cityseg.images import decode_image

    return decode_image(value, target_size=(32, 64))


@functools.cache
def palette_labeller():
    from cityseg.config import LabelConfig
    from cityseg.labels import make_labeller

    return make_labeller(LabelConfig(method="palette"), []).prepare()


@target("pair", files(pair_seeds))
def read_pair_labels(value, folder: Path):
    """The ``pairs`` label format: the pair image read, its colour mask turned into classes."""
    from cityseg.pairs import read_pair

    _, mask = read_pair(write_input(value, folder, ".jpg"))
    return palette_labeller().label(mask, "input")


def label_target(format_name: str) -> None:
    @target(f"label-{format_name}", files(label_seeds))
    def read(value, folder: Path):
        from cityseg.classes import class_set
        from cityseg.label_formats import read_label_file

        return read_label_file(write_input(value, folder, ".png"), format_name, class_set("train19"))


for _format in ("labelids", "trainids", "color"):
    label_target(_format)


LAYOUT_NAMES = [
    "images/train", "labels/train", "images/val", "labels/val", "images", "labels", "masks", "train/images",
    "valid/masks", "train", "JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "imgsFine/leftImg8bit/a/b",
    "gtFine/a/b", "annotations",
]  # fmt: skip


@st.composite
def layout_trees(draw) -> list[str]:
    """Relative file paths of a would-be labelled folder: real folder names, generated and real file names."""
    stems = st.one_of(
        st.sampled_from(["0001", "a_leftImg8bit", "a_gtFine_labelIds", "x.y", "000000_10"]),
        st.text(st.characters(codec="utf-8", exclude_characters="/\\\0"), min_size=1, max_size=12),
    )
    suffixes = st.sampled_from([".png", ".jpg", ".PNG", "_labelIds.png", "_mask.png", ".txt", ""])
    paths = st.tuples(st.sampled_from(LAYOUT_NAMES), stems, suffixes).map(lambda t: f"{t[0]}/{t[1]}{t[2]}")
    return draw(st.lists(paths, max_size=8))


@target("layout", layout_trees)
def read_layout(value: list[str], folder: Path):
    from cityseg.labelled_folders import open_labelled

    root = folder / "input"
    root.mkdir()
    for relative in value:
        path = root / relative
        if path.name in (".", "..") or path.name.startswith("."):
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        except OSError:  # a name the file system refuses (too long): not an input the reader can meet
            continue
    return open_labelled(root)


@st.composite
def class_list_files(draw) -> tuple[str, bytes]:
    """(file name, bytes): an export's class list, mutated."""
    seeds = class_list_seeds()
    name = draw(st.sampled_from(sorted({name for name, _ in seeds})))
    return name, draw(mutated([data for seed, data in seeds if seed == name]))


@target("class-list", class_list_files)
def read_class_list_file(value: tuple[str, bytes], folder: Path):
    from cityseg.classes import class_set

    name, data = value
    return class_set(str(write_tree({name: data}, folder / "input") / name))


@st.composite
def export_trees(draw) -> dict[str, bytes]:
    """An annotation tool's export in miniature, one of its files mutated (or gone)."""
    seeds = export_seeds()
    layout = draw(st.sampled_from(sorted({path.split("/", 1)[0] for path in seeds})))
    tree = {path.split("/", 1)[1]: data for path, data in seeds.items() if path.startswith(f"{layout}/")}
    victim = draw(st.sampled_from(sorted(tree)))
    if draw(st.integers(0, 9)) == 0:
        del tree[victim]
    else:
        tree[victim] = draw(mutated([tree[victim]]))
    return tree


@target("export", export_trees)
def read_export(value: dict[str, bytes], folder: Path):
    from cityseg.classes import class_set
    from cityseg.labelled_folders import dataset_classes, open_labelled, read_truth

    root = write_tree(value, folder / "input")
    found = open_labelled(root)
    classes = class_set(dataset_classes(root))
    return [read_truth(truth, found.label_format, classes) for truth in found.truths.values()]


@target("video", files(video_seeds))
def read_video(value, folder: Path):
    from cityseg.video.reader import FrameReader

    with FrameReader(write_input(value, folder, ".mp4")) as reader:
        return sum(1 for _ in reader)


@target("class-table", yaml_texts(class_tables, class_table_keys))
def read_table(value, folder: Path):
    from cityseg.user_classes import read_class_table

    return read_class_table(write_input(value, folder, ".yaml"))


@target("config", yaml_texts(config_texts, config_keys))
def read_config(value, folder: Path):
    from cityseg.config import Config

    return Config.from_yaml(write_input(value, folder, ".yaml"))


def setting_names(assignment: str) -> tuple[str, ...]:
    """How an error about ``--set assignment`` may name it: the key or the whole, as typed or quoted."""
    key = assignment.partition("=")[0].strip()
    return key, repr(key), repr(assignment)


def assignments() -> st.SearchStrategy:
    from cityseg.config import Config

    keys = [f"{s}.{k}" for s, section in Config().to_dict().items() for k in section]
    key = st.one_of(st.sampled_from(keys), st.text(max_size=20))
    value = st.one_of(
        st.text(max_size=20),
        st.sampled_from(
            ["1", "-1", "0.5", "nan", "inf", "1e999", "true", "[1,2]", "256x512", "{a: 1}", "", "none", "2**70"]
        ),
    )
    return st.tuples(key, st.sampled_from(["=", "", "=="]), value).map(lambda t: "".join(t))


@target("set", assignments, names=lambda value, folder: setting_names(value))
def read_assignment(value: str, folder: Path):
    from cityseg.config import Config

    return Config().override([value])


@st.composite
def model_folders(draw) -> dict[str, bytes]:
    """A tiny model folder with one or two of its files mutated, or its JSON replaced by generated values."""
    files_of = dict(model_seed())
    for name in draw(st.lists(st.sampled_from(sorted(files_of)), min_size=1, max_size=2, unique=True)):
        if name.endswith(".json") and draw(st.booleans()):
            values = json.loads(files_of[name])
            key = draw(st.sampled_from(sorted(values) or ["x"]))
            values[key] = draw(
                st.recursive(
                    st.none() | st.integers() | st.text(max_size=8) | st.floats(),
                    lambda inner: st.lists(inner, max_size=3),
                    max_leaves=6,
                )
            )
            files_of[name] = json.dumps(values).encode()
        else:
            files_of[name] = draw(mutated([files_of[name]]))
    return files_of


@target("model-folder", model_folders)
def read_model_folder(value: dict[str, bytes], folder: Path):
    from cityseg.models import load_model

    return load_model(write_tree(value, folder / "input"))


@target("checkpoint", lambda: mutated(checkpoint_seeds()), names=lambda value, folder: ("last.ckpt",))
def read_checkpoint(value: bytes, folder: Path):
    from cityseg.training.checkpoints import check_checkpoint, checkpoint_path

    run = folder / "input"
    path = checkpoint_path(run)
    path.parent.mkdir(parents=True)
    path.write_bytes(value)
    return check_checkpoint(run)


def token_unless_negative(case, auth: dict[str, str]) -> dict[str, str]:
    """For a Schemathesis case, ``auth`` (the token's header, sent over the case's own), unless the case's headers
    are its invalid part: then a missing or malformed Authorization is the point, and the token would make the
    request valid. (A valid case carries a generated ``Bearer <random>``, which no server could accept.)"""
    from schemathesis.core.parameters import ParameterLocation

    return {} if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER) else auth
