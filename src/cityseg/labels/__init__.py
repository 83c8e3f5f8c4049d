"""Colours to classes: turn the colour masks of pair images into per-pixel class indices.

The masks were drawn in the official Cityscapes palette, then resized and saved as JPEG with 4:2:0
chroma subsampling, so only about two thirds of their pixels still hold an exact palette colour.
Pixels at class edges are blends of two colours, and some blends land near a third, unrelated colour
(car next to black looks like truck). Two labellers recover the classes:

- :class:`PaletteLabeller` (default, :mod:`~cityseg.labels.palette`): a pixel near an official colour (RGB
  distance, and luma: 4:2:0 JPEG keeps luma per pixel) takes its class, looked up in a 2^24-entry table
  (:mod:`~cityseg.labels.colour_lookup`). The others, and thin slivers whose colour a blend of their two
  neighbouring classes would make (:mod:`~cityseg.labels.blends`), take the neighbouring class whose luma
  (then chroma) best matches (:mod:`~cityseg.labels.fill`). On generated scenes with exact labels,
  JPEG-encoded like the real pairs, this recovers 99.6% of train19 labels (the plain nearest colour: 97.5%).
- :class:`KMeansLabeller` (:mod:`~cityseg.labels.kmeans`, the original project's method, done right): K
  clusters fitted on a seeded sample of real mask pixels, each named after the official class nearest its centre.

:func:`make_labeller` chooses one by name (:mod:`~cityseg.labels.registry`). Labels are cached on disk
(:class:`LabelCache`, :mod:`~cityseg.labels.cache`), keyed by the source file and the labeller's
parameters, and a whole dataset is labelled in parallel, streaming, by :func:`label_dataset` or, counting
classes per split too, :func:`label_splits` (:mod:`~cityseg.labels.dataset`); :func:`label_folder` does it for
the folder a config names, as ``cityseg label`` does.

Photos of the official Cityscapes release (:func:`cityseg.pairs.is_release_photo`) need no labeller: their
``gtFine`` label-id PNGs are exact, so :class:`LabelCache` maps those ids to the labeller's class set as
it reads them, and caches nothing (the PNG already is the label). K-Means classes are clusters of mask
colours and have no meaning there, so ``labels.method=kmeans`` on release photos is refused.
"""

from cityseg.labels.base import Labeller
from cityseg.labels.cache import CACHE_FORMAT, LabelCache, default_cache_dir
from cityseg.labels.colour_lookup import (
    _TABLES as _TABLES,  # benchmarks clear this cache to time a fresh worker's build
)
from cityseg.labels.colour_lookup import (
    FAR,
    PALETTE_COLORS,
    PALETTE_IDS,
    PALETTE_IDS_BY_CODE,
    UNCERTAIN,
    nearest_color_table,
)
from cityseg.labels.dataset import (
    PRESENCE_SHARE,
    LabellingOptions,
    LabelReport,
    LabelRun,
    label_dataset,
    label_figure_rows,
    label_folder,
    label_splits,
)
from cityseg.labels.kmeans import KMeansLabeller
from cityseg.labels.palette import PALETTE_VERSION, UNKNOWN_DISTANCE, UNKNOWN_SHARE, PaletteLabeller
from cityseg.labels.registry import LABELLERS, labeller_from_dict, load_labeller, make_labeller

__all__ = [
    "CACHE_FORMAT",
    "FAR",
    "LABELLERS",
    "PALETTE_COLORS",
    "PALETTE_IDS",
    "PALETTE_IDS_BY_CODE",
    "PALETTE_VERSION",
    "PRESENCE_SHARE",
    "UNCERTAIN",
    "UNKNOWN_DISTANCE",
    "UNKNOWN_SHARE",
    "KMeansLabeller",
    "LabelCache",
    "LabelReport",
    "LabelRun",
    "Labeller",
    "LabellingOptions",
    "PaletteLabeller",
    "default_cache_dir",
    "label_dataset",
    "label_figure_rows",
    "label_folder",
    "label_splits",
    "labeller_from_dict",
    "load_labeller",
    "make_labeller",
    "nearest_color_table",
]
