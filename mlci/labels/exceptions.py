"""Errors and the vocabulary of reasons that label ingestion reports.

A *record* problem rejects one record and the rest of the file is still read; a *file* problem
(:class:`LabelFileError`) rejects the whole file and the other files are still read. Notes are
reported but reject nothing.
"""

from __future__ import annotations

__all__ = [
    "LabelError",
    "LabelFileError",
    "UnknownFormatError",
    "RECORD_REASONS",
    "FILE_REASONS",
    "NOTES",
    "UNKNOWN_CLASS",
    "MISSING_CLIP_REF",
    "UNRESOLVABLE_CLIP_REF",
    "CLIP_REF_ESCAPES_STORE",
    "WRONG_TYPE",
    "EMPTY_FILE",
    "NOT_TEXT",
    "INVALID_JSON",
    "INVALID_CSV",
    "UNKNOWN_FORMAT",
    "UNREADABLE",
    "EMPTY_LABELS",
    "NONE_OF_THE_ABOVE_CONFLICT",
    "CANCELLED",
    "CLIP_NOT_IN_STORE",
]

# Record-level rejection reasons.
UNKNOWN_CLASS = "unknown_class"
MISSING_CLIP_REF = "missing_clip_ref"
UNRESOLVABLE_CLIP_REF = "unresolvable_clip_ref"
CLIP_REF_ESCAPES_STORE = "clip_ref_escapes_store"
WRONG_TYPE = "wrong_type"
RECORD_REASONS = (UNKNOWN_CLASS, MISSING_CLIP_REF, UNRESOLVABLE_CLIP_REF, CLIP_REF_ESCAPES_STORE, WRONG_TYPE)

# File-level rejection reasons.
EMPTY_FILE = "empty_file"
NOT_TEXT = "not_text"
INVALID_JSON = "invalid_json"
INVALID_CSV = "invalid_csv"
UNKNOWN_FORMAT = "unknown_format"
UNREADABLE = "unreadable"
FILE_REASONS = (EMPTY_FILE, NOT_TEXT, INVALID_JSON, INVALID_CSV, UNKNOWN_FORMAT, UNREADABLE)

# Reported cases that reject nothing.
EMPTY_LABELS = "empty_labels"
NONE_OF_THE_ABOVE_CONFLICT = "none_of_the_above_conflict"
CANCELLED = "cancelled"
CLIP_NOT_IN_STORE = "clip_not_in_store"  # kept: the clip may be uploaded later, or the reference is wrong
NOTES = (EMPTY_LABELS, NONE_OF_THE_ABOVE_CONFLICT, CANCELLED, CLIP_NOT_IN_STORE)


class LabelError(Exception):
    """Base class of label ingestion errors."""


class LabelFileError(LabelError, ValueError):
    """A whole label file cannot be read; ``reason`` is one of :data:`FILE_REASONS`."""

    def __init__(self, source: str, reason: str, message: str):
        self.source, self.reason, self.message = source, reason, message
        super().__init__(f"{source}: {reason}: {message}")


class UnknownFormatError(LabelFileError):
    """The file parses but matches none of the label formats (or not the one requested)."""

    def __init__(self, source: str, message: str):
        super().__init__(source, UNKNOWN_FORMAT, message)
