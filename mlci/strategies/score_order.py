"""Score ordering from the seed notebook: highest score first, or lowest score first."""

from __future__ import annotations

from mlci.strategies.base import UtilityStrategy

__all__ = ["PositiveFirst", "NegativeFirst"]


class PositiveFirst(UtilityStrategy):
    """The clips the model scores highest first ("positive" in the seed notebook).

    Confirms likely positives quickly (useful to collect examples of a rare concept), but the
    seed found it a poor general ordering. Utility ``p`` per concept, combined by ``policy``.
    Reference: the seed's ``notebook_D_active_labeling`` strategy comparison.
    """

    reason = "positive"

    def __init__(self, *, policy: str = "max", quotas=None):
        self.policy = policy
        self.quotas = quotas

    def utility(self, pool, labeled, available, rng):
        return self._proba(pool)


class NegativeFirst(UtilityStrategy):
    """The clips the model scores lowest first ("negative" in the seed notebook).

    Finds false negatives among confident rejections. Utility ``1 - p`` per concept, combined by
    ``policy``. Reference: the seed's ``notebook_D_active_labeling`` strategy comparison.
    """

    reason = "negative"

    def __init__(self, *, policy: str = "max", quotas=None):
        self.policy = policy
        self.quotas = quotas

    def utility(self, pool, labeled, available, rng):
        return 1 - self._proba(pool)
