"""Query schedules: how many labels the start set has and how many each later batch adds.

A :class:`Schedule` is a list of sizes: the first is the start set (chosen at random, there is no
model yet), every later one a batch chosen by the strategy. The seed's schedules are
:func:`doubling` (5, 5, 10, 10, 20, 20, ...) and :func:`fixed_depth` (20 x 20, 50 x 8, 100 x 4);
:func:`parse_schedule` reads them, or any comma-separated list, from a string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["SEED_SCHEDULES", "Schedule", "doubling", "fixed_depth", "parse_schedule"]


@dataclass(frozen=True)
class Schedule:
    """Start-set size followed by batch sizes.

    Parameters
    ----------
    name : str
        Label used in tables, figures and MLflow run names.
    sizes : tuple of int
        ``sizes[0]`` is the start set, ``sizes[1:]`` the batches; all >= 1.
    until_exhausted : bool, default=False
        Keep adding batches of the last size until the pool is empty (doubling schedules keep
        doubling instead).
    """

    name: str
    sizes: tuple[int, ...]
    until_exhausted: bool = False

    def __post_init__(self):
        if not self.sizes or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in self.sizes):
            raise ValueError(f"schedule {self.name!r} sizes must be ints >= 1, got {self.sizes!r}")

    def label_counts(self, n_pool: int) -> np.ndarray:
        """Cumulative number of labels after each round, for a pool of ``n_pool`` clips.

        The schedule stops when the pool is used up; a last batch that does not fit is cut to the
        clips left, so a schedule that runs to exhaustion ends with the whole pool labeled.

        Raises
        ------
        ValueError
            When ``n_pool`` is smaller than the start set.
        """
        if n_pool < self.sizes[0]:
            raise ValueError(
                f"schedule {self.name!r} starts with {self.sizes[0]} labels but the pool has only {n_pool} clips"
            )
        counts, total = [], 0
        sizes = list(self.sizes)
        i = 0
        while total < n_pool:
            if i < len(sizes):
                size = sizes[i]
            elif self.until_exhausted:
                size = self._next_size(sizes)
                sizes.append(size)
            else:
                break
            total = min(n_pool, total + size)
            counts.append(total)
            i += 1
        return np.asarray(counts, dtype=np.int64)

    def _next_size(self, sizes: list[int]) -> int:
        if self.name.startswith("doubling"):
            # 5, 5, 10, 10, 20, 20, ...: every size twice, then double.
            return sizes[-1] * 2 if len(sizes) >= 2 and sizes[-1] == sizes[-2] else sizes[-1]
        return sizes[-1]

    def __str__(self) -> str:
        return self.name


def doubling(start: int = 5, *, max_labels: int | None = None) -> Schedule:
    """The seed's growing batches: ``start, start, 2*start, 2*start, 4*start, ...``.

    Parameters
    ----------
    start : int, default=5
    max_labels : int, default=None
        Stop once this many labels are reached (None: until the pool is labeled).
    """
    if isinstance(start, bool) or not isinstance(start, int) or start < 1:
        raise ValueError(f"start must be an int >= 1, got {start!r}")
    name = f"doubling{start}" if max_labels is None else f"doubling{start}-max{max_labels}"
    if max_labels is None:
        return Schedule(name, (start, start), until_exhausted=True)
    sizes, total, size = [], 0, start
    while total < max_labels:
        for _ in range(2):
            step = min(size, max_labels - total)
            if step <= 0:
                break
            sizes.append(step)
            total += step
        size *= 2
    return Schedule(name, tuple(sizes))


def fixed_depth(batch: int, rounds: int) -> Schedule:
    """``rounds`` rounds of ``batch`` labels each (the first is the random start set): ``20x20``."""
    for name, value in (("batch", batch), ("rounds", rounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return Schedule(f"{batch}x{rounds}", (batch,) * rounds)


#: The seed notebook's schedules.
SEED_SCHEDULES = ("doubling5", "20x20", "50x8", "100x4")


def parse_schedule(text: str | Schedule) -> Schedule:
    """A schedule from its name.

    Accepted: ``doubling`` / ``doubling<start>`` / ``doubling<start>-max<labels>``,
    ``<batch>x<rounds>`` (fixed depth), or a comma-separated list of sizes (``5,5,10,20``; the
    first is the start set).

    Raises
    ------
    ValueError
        Naming the text when it matches none of the forms.
    """
    if isinstance(text, Schedule):
        return text
    if not isinstance(text, str):
        raise TypeError(f"schedule must be a string such as 'doubling5', '20x20' or '5,5,10', got {text!r}")
    t = text.strip().lower().replace(" ", "")
    m = re.fullmatch(r"doubling(\d+)?(?:-max(\d+))?", t)
    if m:
        return doubling(int(m.group(1) or 5), max_labels=int(m.group(2)) if m.group(2) else None)
    m = re.fullmatch(r"(\d+)[x\*](\d+)", t)
    if m:
        return fixed_depth(int(m.group(1)), int(m.group(2)))
    if re.fullmatch(r"\d+(,\d+)*", t):
        sizes = tuple(int(v) for v in t.split(","))
        if min(sizes) < 1:
            raise ValueError(f"schedule sizes must be >= 1, got {text!r}")
        return Schedule(",".join(str(s) for s in sizes), sizes)  # the name parses back to itself
    raise ValueError(
        f"unknown schedule {text!r}: use 'doubling5', 'doubling5-max400', '20x20' (batch x rounds) "
        "or a comma-separated list of sizes such as '5,5,10,10'"
    )
