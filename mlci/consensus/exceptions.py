"""Errors of the consensus step."""

from __future__ import annotations

__all__ = ["ConsensusError", "NoAnnotationsError", "ConsensusConflictError", "SnapshotNotFoundError"]


class ConsensusError(Exception):
    """Base class of consensus errors."""


class NoAnnotationsError(ConsensusError, ValueError):
    """There is nothing to merge: the annotations table is empty."""


class ConsensusConflictError(ConsensusError):
    """``consensus/<snapshot>/`` already holds a result computed differently; nothing is overwritten."""


class SnapshotNotFoundError(ConsensusError, LookupError):
    """No consensus is stored for the requested (or any) label snapshot."""
