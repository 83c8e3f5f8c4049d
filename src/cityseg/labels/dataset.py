"""Labelling a whole dataset: in parallel, streaming, into the cache; class frequencies per image set."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cityseg.classes import ClassSet
from cityseg.defaults import LABEL_FIGURE
from cityseg.errors import CitysegError
from cityseg.labels.base import Labeller
from cityseg.labels.cache import LabelCache

if TYPE_CHECKING:
    from cityseg.config import Config

PRESENCE_SHARE = 0.0003  # an image contains a class covering this share of it (20 pixels of 256x256)


@dataclass
class LabelReport:
    """What :func:`label_splits` found: class frequencies, how many images, what was skipped.

    Attributes:
        class_set: the classes counted.
        pixel_counts: (num_classes,) int64 pixels of each class over all labelled images.
        image_counts: (num_classes,) images containing each class (on at least PRESENCE_SHARE of the image:
            blends leave specks of rare classes, e.g. truck along car edges, that would count everywhere).
        ignored_pixels: pixels labelled IGNORE_INDEX (void).
        count: images labelled.
        cached: of ``count``, labels read back from the cache (an earlier or interrupted run made them).
        skipped: (path, reason) of each image skipped with ``skip_bad``.
        sets: from :func:`label_splits`, the report of each named image set (e.g. ``sets["train"]``).
    """

    class_set: ClassSet
    pixel_counts: np.ndarray
    image_counts: np.ndarray
    ignored_pixels: int = 0
    count: int = 0
    cached: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    sets: dict[str, LabelReport] = field(default_factory=dict)

    @classmethod
    def empty(cls, class_set: ClassSet) -> LabelReport:
        """A report of no images yet."""
        num = class_set.num_classes
        return cls(class_set, np.zeros(num, dtype=np.int64), np.zeros(num, dtype=np.int64))

    def record(self, path: Path, counts: np.ndarray | None, reason: str | None, cached: bool) -> None:
        """Count one image: ``counts`` (256,) pixels of each label value, or None with the ``reason`` it was skipped."""
        if counts is None:
            self.skipped.append((path, reason or "unreadable"))
            return
        num = self.class_set.num_classes
        self.pixel_counts += counts[:num]
        self.image_counts += counts[:num] >= max(1.0, PRESENCE_SHARE * counts.sum())
        self.ignored_pixels += int(counts[num:].sum())
        self.count += 1
        self.cached += cached

    @property
    def total_pixels(self) -> int:
        return int(self.pixel_counts.sum()) + self.ignored_pixels

    def frequencies(self) -> np.ndarray:
        """(num_classes,) share of all labelled pixels (void included in the total)."""
        return self.pixel_counts / max(self.total_pixels, 1)

    def table(self) -> str:
        """The class-frequency table: class, share of pixels, images containing it."""
        names = [*self.class_set.names, "(void / ignored)"]
        width = max(len(n) for n in names)
        lines = [f"{'class':<{width}}  {'pixels %':>8}  {'images':>7}"]
        shares = self.frequencies()
        for i, name in enumerate(self.class_set.names):
            lines.append(f"{name:<{width}}  {100 * shares[i]:8.2f}  {int(self.image_counts[i]):7d}")
        void = 100 * self.ignored_pixels / max(self.total_pixels, 1)
        lines.append(f"{names[-1]:<{width}}  {void:8.2f}")
        lines.append(f"({self.count} images; 'images' counts those where the class covers >= {PRESENCE_SHARE:.2%})")
        return "\n".join(lines)


@dataclass(frozen=True)
class LabellingOptions:
    """How a set of images is labelled: where labels are cached, by how many processes, what bad images do.

    Args:
        cache_dir: label cache folder (None: the user cache); ``use_cache=False`` computes without it.
        workers: worker processes (1 = label in this process).
        skip_bad: record unreadable or malformed images in ``skipped`` and go on, instead of stopping.
        progress: show a tqdm progress bar (on a terminal only).
        mask_side: which half of each pair image holds the mask.
        use_cache: read and write the cache (False: compute every label).
        source: the labelled folder the photos are from (:class:`cityseg.labelled_folders.LabelSource`), or None.
    """

    cache_dir: str | os.PathLike | None = None
    workers: int = 1
    skip_bad: bool = False
    progress: bool = True
    mask_side: str = "right"
    use_cache: bool = True
    source: object = None


# Worker-process state, set once per process by _init_worker (the labeller is pickled once, not per image).
_WORKER: dict = {}


def _init_worker(labeller: Labeller, options: LabellingOptions) -> None:
    cache = LabelCache(labeller.prepare(), options.cache_dir, enabled=options.use_cache, source=options.source)
    _WORKER.update(cache=cache, mask_side=options.mask_side, skip_bad=options.skip_bad)


def _count_one(path: Path) -> tuple[np.ndarray | None, str | None, bool]:
    """Label one image (via the cache): its per-value pixel counts or the reason it was skipped, and whether
    the labels were already cached (so an interrupted run resumes: only the missing labels are computed)."""
    cache: LabelCache = _WORKER["cache"]
    try:
        cached = cache.enabled and cache.entry(path, _WORKER["mask_side"]).exists()
        labels = cache.get(path, _WORKER["mask_side"])
    except CitysegError as exc:
        if _WORKER["skip_bad"]:
            return None, str(exc), False
        raise
    return np.bincount(labels.ravel(), minlength=256), None, cached


def label_figure_rows(
    paths: Sequence[str | os.PathLike], cache: LabelCache, mask_side: str = "right"
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(photo, colour mask, class indices) of each image, for :func:`cityseg.plots.plot_label_figure`.

    A Cityscapes release photo has no colour mask: its truth's label ids are shown in their official colours;
    a labelled folder's photo (``cache.source``) shows its labels in the class colours.
    """
    from cityseg.classes import class_set
    from cityseg.pairs import is_release_photo, read_pair, read_release

    rows = []
    for path in paths:
        if cache.source is not None:
            photo, labels = cache.pair(path)
            rows.append((photo, cache.labeller.class_set.colorize(labels), labels))
            continue
        if is_release_photo(path):
            photo, label_ids = read_release(path)
            every_id = class_set("labelids")
            mask = every_id.colorize(every_id.from_label_ids(label_ids))
        else:
            photo, mask = read_pair(path, mask_side)
        rows.append((photo, mask, cache.get(path, mask_side)))
    return rows


def label_dataset(paths: Sequence[str | os.PathLike], labeller: Labeller, **options) -> LabelReport:
    """Label every image (filling the cache) and count classes: :func:`label_splits` over one set of images.

    Args:
        paths: pair images.
        labeller: from :func:`~cityseg.labels.make_labeller`.
        options: the fields of :class:`LabellingOptions` (``cache_dir``, ``workers``, ``skip_bad`` ...).

    Returns:
        A :class:`LabelReport` (with no ``sets``).

    Raises:
        CitysegError: the first bad image (without ``skip_bad``), or an unwritable cache folder.
    """
    return label_splits({"images": paths}, labeller, LabellingOptions(**options)).sets[
        "images"
    ]  # the one set's: the same counts


def label_splits(
    splits: Mapping[str, Sequence[str | os.PathLike]],
    labeller: Labeller,
    options: LabellingOptions | None = None,
) -> LabelReport:
    """Label every image of several named sets (filling the cache) and count classes, in all and per set.

    Streaming: memory does not grow with the dataset. The images of every set are labelled in one pass (one
    worker pool, one progress bar), set after set in the order of ``splits``. The report covers every image;
    ``report.sets[name]`` covers one set, e.g. ``report.sets["train"].pixel_counts`` for class weights,
    without reading any label again.

    Args:
        splits: set name (``train``, ``val``, ``test``) -> pair images.
        labeller: from :func:`~cityseg.labels.make_labeller`.
        options: where the labels are cached, how many processes label them, what to do with bad images
            (:class:`LabellingOptions`; default: its defaults).

    Returns:
        A :class:`LabelReport` with one report per set in ``sets`` (skipped images listed in both).

    Raises:
        CitysegError: the first bad image (without ``skip_bad``), or an unwritable cache folder.

    Example:
        >>> report = label_splits({"train": train, "val": val}, labeller)  # doctest: +SKIP
        >>> report.sets["train"].pixel_counts  # doctest: +SKIP
        array([...])
    """
    from tqdm import tqdm

    names = [name for name, paths in splits.items() for _ in paths]
    paths = [Path(p) for images in splits.values() for p in images]
    report = LabelReport.empty(labeller.class_set)
    report.sets = {name: LabelReport.empty(labeller.class_set) for name in splits}

    def record(index: int, *result) -> None:
        report.record(paths[index], *result)
        report.sets[names[index]].record(paths[index], *result)

    options = options or LabellingOptions()
    init_args = (labeller, options)
    labeller.prepare()  # build lookup tables once; forked workers inherit them
    # disable=None: a bar on a terminal only, so a log file gets no stream of redrawn lines
    bar = tqdm(
        total=len(paths), desc="labelling", unit="img", disable=None if options.progress else True, dynamic_ncols=True
    )
    try:
        if options.workers <= 1 or len(paths) < 2:
            _init_worker(*init_args)
            for index, path in enumerate(paths):
                record(index, *_count_one(path))
                bar.update()
        else:
            from cityseg.process_errors import guarded_pool

            chunksize = max(1, min(32, len(paths) // (options.workers * 8)))
            with guarded_pool(options.workers, _init_worker, init_args, "labelling") as pool_map:
                for index, result in enumerate(pool_map(_count_one, paths, chunksize=chunksize)):
                    record(index, *result)
                    bar.update()
    finally:
        bar.close()
        _WORKER.clear()
    return report


@dataclass
class LabelRun:
    """What :func:`label_folder` did; ``str()`` is the summary ``cityseg label`` prints.

    Attributes:
        root: the dataset folder.
        found: images found in it.
        labeller: the labeller used (its key names its parameters).
        report: the class frequencies, and the images skipped.
        figure: the figure drawn, or None.
        exact: for a dataset with label images, what they are (its layout and format), read as they are.
        recognised: the line saying what the dataset was recognised as and whose classes it takes.
    """

    root: str
    found: int
    labeller: Labeller
    report: LabelReport
    figure: Path | None = None
    exact: str = ""
    recognised: str = ""  # what the dataset was recognised as, and whose classes it takes

    def __str__(self) -> str:
        report, labeller = self.report, self.labeller
        resumed = f", {report.cached} of them already in the cache" if report.cached else ""
        how = self.exact or labeller.key()
        lines = [f"cityseg: {self.recognised}"] if self.recognised else []
        lines.append(f"labelled {report.count} of {self.found} images in {self.root} ({how}){resumed}")
        lines.append(report.table())
        if labeller.method == "kmeans":
            lines.append("clusters absorbed:")
            for cluster, names in labeller.absorbed().items():
                lines.append(f"  {labeller.class_set.names[cluster]}: {', '.join(names) or '-'}")
        if report.skipped:
            lines.append(f"skipped {len(report.skipped)} bad images:")
            lines.extend(f"  {path}: {reason}" for path, reason in report.skipped)
        if self.figure is not None:
            lines.append(f"figure: {self.figure}")
        return "\n".join(lines)


def label_folder(
    config: Config, use_cache: bool = True, show: int = 0, figure: str | os.PathLike = LABEL_FIGURE
) -> LabelRun:
    """Label every image of ``config.data.root`` into the cache and count classes: what ``cityseg label`` runs.

    Args:
        config: the data settings (root, mask side, workers, cache, skip_bad) and the labeller's (``labels``).
        use_cache: False computes every label and reads and writes no cache.
        show: also draw this many images (photo, colour mask, labels) into ``figure``.
        figure: the figure's path, checked writable before any labelling.

    Returns:
        A :class:`LabelRun`.

    Raises:
        CitysegError: a bad image (without ``data.skip_bad``), an unwritable cache or figure folder.
    """
    from cityseg.files import ensure_writable_dir
    from cityseg.labelled_folders import adopt_dataset_classes, label_source
    from cityseg.labels.registry import make_labeller
    from cityseg.pairs import discover

    figure = Path(figure)
    if show > 0:  # fail before the work, not after it
        try:
            ensure_writable_dir(figure.parent if str(figure.parent) else ".")
        except CitysegError:
            raise CitysegError(
                f"cannot write figure {figure}: its folder is not writable; pick another --out"
            ) from None
    data = config.data
    recognised = adopt_dataset_classes(config)
    splits = discover(data.root, label_format=data.label_format, skip_bad=data.skip_bad)
    source = label_source(data.root, data.label_format)
    paths = [path for images in splits.values() for path in images]
    cache_dir = data.cache_dir or None
    labeller = make_labeller(
        config.labels, splits.get("train", paths), data.mask_side, cache_dir, exact=source is not None
    )
    report = label_dataset(
        paths,
        labeller,
        cache_dir=cache_dir,
        workers=max(1, data.workers),
        skip_bad=data.skip_bad,
        mask_side=data.mask_side,
        use_cache=use_cache,
        source=source,
    )
    run = LabelRun(data.root, len(paths), labeller, report)
    if source is not None:
        folder = source.folder()
        run.exact = f"{folder.layout.title}: {folder.label_format} labels as {labeller.class_set.name} classes"
        run.recognised = recognised
    if show > 0:
        from cityseg.plots import plot_label_figure

        skipped = {path for path, _ in report.skipped}
        shown = [path for path in paths if path not in skipped][:show]
        cache = LabelCache(labeller, cache_dir, enabled=use_cache, source=source)
        rows = label_figure_rows(shown, cache, data.mask_side)
        try:
            plot_label_figure(rows, labeller.class_set, figure)
        except OSError as exc:
            raise CitysegError(f"cannot write figure {figure}: {exc.strerror or exc}; choose another --out") from None
        run.figure = figure
    return run
