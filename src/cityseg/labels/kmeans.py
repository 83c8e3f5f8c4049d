"""The K-Means labeller (the original project's method, done right).

K clusters fitted on a seeded sample of real mask pixels, each named after the official class nearest
its centre; a pixel takes the cluster with the nearest centre, looked up in a 2^24-entry table.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cityseg.classes import IGNORE_INDEX, LABEL_BY_ID, NUM_LABEL_IDS, ClassSet
from cityseg.errors import CitysegError
from cityseg.files import ensure_writable_dir
from cityseg.images import pack_rgb
from cityseg.labels.base import LabelData, Labeller, check_mask, load_saved, refuse_kmeans
from cityseg.labels.cache import cache_root
from cityseg.labels.colour_lookup import PALETTE_COLORS, PALETTE_IDS, UNCERTAIN, cached_table

if TYPE_CHECKING:
    from cityseg.config import LabelConfig


class KMeansLabeller(Labeller):
    """K colour clusters of real mask pixels, each named after the official class nearest its centre.

    Build one with :meth:`fit`; :meth:`save` / :meth:`load` keep the fitted centres, so training,
    evaluation and prediction label alike. Pixels take the cluster with the nearest centre.

    Args:
        centers: (K, 3) cluster centres in RGB, in class order.
        seed, pixels, mask_side: how the centres were fitted (kept for the record and the cache key).

    Example:
        >>> labeller = KMeansLabeller.fit(paths, k=10, seed=0)  # doctest: +SKIP
        >>> labeller.class_set.names[:3]  # doctest: +SKIP
        ('unlabeled', 'road', 'sidewalk')
        >>> labeller.absorbed()[1]  # doctest: +SKIP
        ['road', 'ground']
    """

    method = "kmeans"

    def __init__(self, centers: np.ndarray, seed: int = 0, pixels: int = 0, mask_side: str = "right"):
        centers = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
        if not 1 <= len(centers) < UNCERTAIN:
            raise CitysegError(f"kmeans needs 1..{UNCERTAIN - 1} clusters, got {len(centers)}")
        self.centers = centers
        self.seed, self.pixels, self.mask_side = int(seed), int(pixels), mask_side
        self.k = len(centers)
        self.label_ids = nearest_label_ids(centers)  # official id each cluster is named after
        self.class_set = _cluster_classes(centers, self.label_ids)

    @classmethod
    def fit(
        cls,
        paths: Sequence[str | os.PathLike],
        k: int = 10,
        seed: int = 0,
        pixels: int = 200_000,
        mask_side: str = "right",
        images: int = 200,
        skip_bad: bool = False,
    ) -> KMeansLabeller:
        """Fit K clusters on a seeded sample of mask pixels: ``pixels`` in all, from up to ``images`` images.

        Same paths and seed give the same centres, hence the same labels.
        """
        from sklearn.cluster import KMeans

        if not paths:
            raise CitysegError("kmeans labelling needs images to fit on; the dataset is empty")
        if k < 1 or pixels < k:
            raise CitysegError(f"kmeans needs k >= 1 and at least k sample pixels (k={k}, pixels={pixels})")
        sample = _sample_mask_pixels(paths, seed, pixels, mask_side, images=images, skip_bad=skip_bad)  # (pixels, 3)
        if len(np.unique(sample, axis=0)) < k:
            raise CitysegError(f"the sampled masks hold fewer than k={k} distinct colours; lower --k")
        model = KMeans(n_clusters=k, random_state=seed, n_init=1).fit(sample)
        centers = model.cluster_centers_
        # stable, meaningful order: by the official class each cluster is named after, then by distance to it
        label_ids = nearest_label_ids(centers)
        own = PALETTE_COLORS[[list(PALETTE_IDS).index(i) for i in label_ids]].astype(np.float64)
        order = np.lexsort((((centers - own) ** 2).sum(1), label_ids))
        return cls(centers[order], seed=seed, pixels=len(sample), mask_side=mask_side)

    @classmethod
    def from_config(cls, label_config: LabelConfig, data: LabelData) -> KMeansLabeller:
        """Centres fitted on ``paths`` as ``label_config`` says, or those fitted before with the same settings.

        Fitted centres are kept in the cache (``kmeans/``), keyed by the settings and the paths.

        Raises:
            CitysegError: photos with exact labels (``data.exact``, or release photos): clusters mean nothing there.
        """
        from cityseg.pairs import is_release_photo

        paths, mask_side = list(data.paths), data.mask_side
        release = next((p for p in paths if data.exact or is_release_photo(p)), None)
        if release is not None:
            refuse_kmeans(release)
        fit_key = hashlib.sha1(
            json.dumps(
                [label_config.k, label_config.seed, label_config.kmeans_pixels, mask_side, [str(p) for p in paths]]
            ).encode()
        ).hexdigest()[:16]
        saved = ensure_writable_dir(cache_root(data.cache_dir) / "kmeans") / f"{fit_key}.json"
        if saved.exists():
            try:
                return cls.load(saved)
            except CitysegError:
                pass  # a damaged file: refit and overwrite it
        labeller = cls.fit(
            paths, k=label_config.k, seed=label_config.seed, pixels=label_config.kmeans_pixels, mask_side=mask_side
        )
        labeller.save(saved)
        return labeller

    @classmethod
    def from_dict(cls, values: dict) -> KMeansLabeller:
        """Rebuild the labeller from :meth:`to_dict` output: its centres and how they were fitted."""
        return cls(values["centers"], values.get("seed", 0), values.get("pixels", 0), values.get("mask_side", "right"))

    def key(self) -> str:
        digest = hashlib.sha1(np.round(self.centers, 6).tobytes()).hexdigest()[:10]
        return f"kmeans-k{self.k}-{digest}"

    def absorbed(self) -> dict[int, list[str]]:
        """Cluster index -> the official classes whose exact colour falls in that cluster."""
        out: dict[int, list[str]] = {i: [] for i in range(self.k)}
        distance = ((PALETTE_COLORS.astype(np.float64)[:, None] - self.centers[None]) ** 2).sum(2)
        for label_id, cluster in sorted(zip(PALETTE_IDS.tolist(), distance.argmin(1).tolist(), strict=True)):
            out[int(cluster)].append(LABEL_BY_ID[label_id].name)
        return out

    def prepare(self) -> KMeansLabeller:
        self._table()
        return self

    def _table(self) -> np.ndarray:
        centers = np.clip(np.rint(self.centers), 0, 255).astype(np.uint8)
        return cached_table(centers, None)

    def label(self, mask_rgb: np.ndarray, source: str = "") -> np.ndarray:
        mask_rgb = check_mask(mask_rgb, source)
        return self._table().take(pack_rgb(mask_rgb))

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "k": self.k,
            "seed": self.seed,
            "pixels": self.pixels,
            "mask_side": self.mask_side,
            "centers": self.centers.round(6).tolist(),
            "names": list(self.class_set.names),
            "label_ids": [int(i) for i in self.label_ids],
            "absorbed": {str(i): names for i, names in self.absorbed().items()},
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> KMeansLabeller:
        """Read centres saved by :meth:`save`; a one-line error if the file holds another labeller."""

        def rebuild(values: dict) -> KMeansLabeller:
            if values.get("method") != cls.method:
                raise CitysegError(f"{path} holds a {values.get('method')} labeller, not kmeans centres")
            return cls.from_dict(values)

        return load_saved(path, rebuild)


def nearest_label_ids(colors: np.ndarray) -> np.ndarray:
    """(K, 3) RGB colours -> (K,) official label id of the nearest palette colour to each."""
    distance = ((np.asarray(colors, dtype=np.float64)[:, None] - PALETTE_COLORS[None]) ** 2).sum(2)
    return PALETTE_IDS[distance.argmin(1)]


def _cluster_classes(centers: np.ndarray, label_ids: np.ndarray) -> ClassSet:
    """The ``kmeans`` class set: one class per cluster, named (and numbered, if repeated) after ``label_ids``."""
    names, seen = [], {}
    for label_id in label_ids:
        name = LABEL_BY_ID[int(label_id)].name
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    id_to_class = np.full(NUM_LABEL_IDS, IGNORE_INDEX, dtype=np.uint8)
    for cluster in reversed(range(len(centers))):  # an official id maps onto the first cluster named after it
        id_to_class[label_ids[cluster]] = cluster
    return ClassSet(
        name="kmeans",
        names=tuple(names),
        colors=tuple(tuple(int(v) for v in np.clip(np.rint(c), 0, 255)) for c in centers),
        id_to_class=id_to_class,
        class_to_id=tuple(int(i) for i in label_ids),
    )


def _sample_mask_pixels(
    paths: Sequence[str | os.PathLike], seed: int, pixels: int, mask_side: str, *, images: int, skip_bad: bool
) -> np.ndarray:
    """(pixels, 3) float64 mask colours, a seeded sample from up to ``images`` of ``paths``."""
    from cityseg.pairs import read_pair

    rng = np.random.default_rng(seed)
    chosen = sorted(rng.permutation(len(paths))[: min(images, len(paths))])
    per_image = -(-pixels // len(chosen))  # ceil
    samples = []
    for i in chosen:
        try:
            _, mask = read_pair(paths[i], mask_side)
        except CitysegError:
            if skip_bad:
                continue
            raise
        flat = mask.reshape(-1, 3)
        samples.append(flat[rng.choice(len(flat), size=min(per_image, len(flat)), replace=False)])
    if not samples:
        raise CitysegError("kmeans labelling found no readable image to fit on")
    return np.concatenate(samples)[:pixels].astype(np.float64)
