"""Scalar random numbers for scene geometry, from the scene's one generator.

A scene draws a few thousand scalars; asking numpy for each would cost more than the geometry it feeds,
so they come from a pool the generator fills 512 at a time. The generator stays the only source, so a seed
still fixes a scene; but every draw, and the order of draws, is part of the scene: reordering two calls
changes every scene after them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


class Dice:
    """Scalar random numbers from a pool drawn in blocks from the scene's generator (cheap and reproducible)."""

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._pool: list[float] = []
        self._next = 0

    def random(self) -> float:
        if self._next == len(self._pool):
            self._pool, self._next = self._rng.random(512).tolist(), 0
        self._next += 1
        return self._pool[self._next - 1]

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def integers(self, low: int, high: int) -> int:
        """An int in [low, high)."""
        return min(low + int((high - low) * self.random()), high - 1)

    def chance(self, p: float) -> bool:
        return self.random() < p

    def choice(self, items: Sequence, weights: Sequence[float] | None = None):
        if weights is None:
            return items[self.integers(0, len(items))]
        x, total = self.random() * sum(weights), 0.0
        for item, weight in zip(items, weights, strict=True):
            total += weight
            if x < total:
                return item
        return items[-1]

    def poisson(self, mean: float) -> int:
        """Knuth's method; fine for the small means used here."""
        limit, k, product = math.exp(-mean), 0, self.random()
        while product > limit:
            k += 1
            product *= self.random()
        return k


class SeededDice(Dice):
    """Dice from their own generator, seeded by ``entropy`` and made only when first needed (most never are)."""

    def __init__(self, entropy: Sequence[int]):
        super().__init__(None)  # type: ignore[arg-type]
        self._entropy = list(entropy)

    def random(self) -> float:
        if self._rng is None:
            self._rng = np.random.default_rng(self._entropy)
        return super().random()
