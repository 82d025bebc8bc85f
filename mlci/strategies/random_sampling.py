"""Random sampling: the baseline every other strategy has to beat."""

from __future__ import annotations

from mlci.strategies.base import UtilityStrategy

__all__ = ["RandomSampling"]


class RandomSampling(UtilityStrategy):
    """Clips in a random order drawn from ``random_state`` (reproducible with an int seed).

    The passive-learning baseline of every active-learning comparison (Settles, 2009, "Active
    learning literature survey"); needs neither scores nor labels. The utility reported is the
    uniform draw that ranked the clip.
    """

    reason = "random"

    def __init__(self):
        pass

    def utility(self, pool, labeled, available, rng):
        return rng.random(len(pool))
