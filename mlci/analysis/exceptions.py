"""Errors of the simulator; each message carries the names or numbers that explain it."""

from __future__ import annotations

__all__ = ["NotEnoughDataError", "SimulationError", "UnknownSimulationStrategyError"]


class SimulationError(Exception):
    """Base class of every simulation error."""


class UnknownSimulationStrategyError(SimulationError, KeyError):
    """No strategy of that name can be simulated."""

    def __init__(self, name: str, known: list[str], reason: str | None = None):
        self.name, self.known, self.reason = name, known, reason
        why = f"strategy {name!r} cannot be simulated: {reason}" if reason else f"unknown strategy {name!r}"
        super().__init__(f"{why}; simulated strategies: {', '.join(known)}")

    def __str__(self) -> str:
        return self.args[0]


class NotEnoughDataError(SimulationError, ValueError):
    """Too few clips or positives to split into a test set and a pool."""
