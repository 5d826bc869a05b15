"""The balanced under-sampler of the seed paper (Table 1): fixed shares of negatives and of each subtype.

A batch of 128 holds 48 negatives (37.5 %) and 16 positives of each of the five subtypes (12.5 %
each). Every pool is walked through a fresh permutation, so each slice of a pool is seen once before
any is repeated; small pools (epidural) are repeated more often than large ones. A slice with
several subtypes can come from several pools, so those subtypes end up a little above their share,
as the paper says.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import Sampler

from triage.domain import SUBTYPES

LOGGER = logging.getLogger(__name__)

NEGATIVE = "negative"
#: Stage 1: 37.5 % negatives and 12.5 % positives of each subtype (the paper's Table 1).
DETECT_SHARES: Mapping[str, float] = {NEGATIVE: 0.375, **dict.fromkeys(SUBTYPES, 0.125)}
#: Stage 2 sees positive slices only: 20 % of each subtype.
SUBTYPE_SHARES: Mapping[str, float] = dict.fromkeys(SUBTYPES, 0.2)


def batch_composition(batch_size: int, shares: Mapping[str, float]) -> dict[str, int]:
    """How many slices of each pool a batch holds (largest remainders, summing to ``batch_size``).

    >>> batch_composition(128, DETECT_SHARES)["negative"], batch_composition(128, DETECT_SHARES)["subdural"]
    (48, 16)
    """
    if batch_size < 1:
        raise ValueError(f"batch size {batch_size!r} must be at least 1")
    total = sum(shares.values())
    exact = {name: batch_size * share / total for name, share in shares.items()}
    counts = {name: math.floor(value) for name, value in exact.items()}
    remainder = batch_size - sum(counts.values())
    for name in sorted(exact, key=lambda n: (counts[n] - exact[n], list(shares).index(n)))[:remainder]:
        counts[name] += 1
    return counts


def pools(labels: np.ndarray, shares: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Indices per pool: ``negative`` (any == 0) and each subtype (that subtype == 1)."""
    labels = np.asarray(labels)
    result = {}
    for name in shares:
        if name == NEGATIVE:
            result[name] = np.flatnonzero(labels[:, 0] == 0)
        else:
            result[name] = np.flatnonzero(labels[:, 1 + SUBTYPES.index(name)] == 1)
    return result


class _Cycle:
    """Endless walk through a pool, reshuffled each time it runs out."""

    def __init__(self, indices: np.ndarray, rng: np.random.Generator) -> None:
        self.indices = indices
        self.rng = rng
        self.order = rng.permutation(indices)
        self.position = 0

    def take(self, count: int) -> list[int]:
        taken: list[int] = []
        while len(taken) < count:
            if self.position == len(self.order):
                self.order = self.rng.permutation(self.indices)
                self.position = 0
            step = min(count - len(taken), len(self.order) - self.position)
            taken.extend(int(i) for i in self.order[self.position : self.position + step])
            self.position += step
        return taken


class BalancedBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of (index, augmentation seed) with fixed pool shares; use as a DataLoader ``batch_sampler``.

    Parameters
    ----------
    labels
        (N, 6) 0/1 labels in ``CLASSES`` order.
    batch_size
        Slices per batch.
    steps
        Batches per epoch.
    shares
        Pool name -> share (:data:`DETECT_SHARES` or :data:`SUBTYPE_SHARES`).
    seed
        Base seed; the batches of epoch ``e`` depend only on ``(seed, e)``, so a resumed run
        sees the same batches as an uninterrupted one.

    Notes
    -----
    A pool without any slice (a subtype absent from the data) gives its share to the other pools;
    a warning names it.
    """

    def __init__(
        self,
        labels: np.ndarray,
        *,
        batch_size: int,
        steps: int,
        shares: Mapping[str, float] = DETECT_SHARES,
        seed: int = 0,
    ) -> None:
        self.steps = steps
        self.seed = seed
        self.epoch = 0
        self.batch_size = batch_size
        all_pools = pools(labels, shares)
        empty = [name for name, indices in all_pools.items() if len(indices) == 0]
        if empty:
            LOGGER.warning("no training slices for %s: their share of each batch goes to the other pools", empty)
        self.pools = {name: indices for name, indices in all_pools.items() if len(indices)}
        if not self.pools:
            raise ValueError("no slices to sample from: every pool is empty")
        self.composition = batch_composition(batch_size, {name: shares[name] for name in self.pools})

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose batches the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        cycles = {name: _Cycle(indices, rng) for name, indices in self.pools.items()}
        for _ in range(self.steps):
            batch = [i for name, count in self.composition.items() for i in cycles[name].take(count)]
            order = rng.permutation(len(batch))
            seeds = rng.integers(0, 2**31 - 1, size=len(batch))
            yield [(batch[j], int(seeds[j])) for j in order]


def default_steps(labels: np.ndarray, batch_size: int, shares: Mapping[str, float]) -> int:
    """Steps per epoch so that the positive slices are seen about once per epoch."""
    positives = int((np.asarray(labels)[:, 0] == 1).sum())
    positive_share = sum(share for name, share in shares.items() if name != NEGATIVE) / sum(shares.values())
    return max(1, math.ceil(positives / max(1.0, batch_size * positive_share)))


def composition_of(labels: np.ndarray, batch: Sequence[int]) -> dict[str, float]:
    """Share of negatives and of each subtype in one batch (for tests and logs)."""
    rows = np.asarray(labels)[list(batch)]
    result = {NEGATIVE: float((rows[:, 0] == 0).mean())}
    result.update({name: float(rows[:, 1 + k].mean()) for k, name in enumerate(SUBTYPES)})
    return result
