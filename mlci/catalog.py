"""The class catalog: the concepts labelers are asked about, and how their names are matched."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ClassCatalog", "Concept", "NONE_OF_THE_ABOVE", "normalize_class_name"]

#: The labeling question's explicit negative answer (see the seed's ``question.html``).
NONE_OF_THE_ABOVE = "none of the above"


def normalize_class_name(name: str) -> str:
    """Case- and space-insensitive form of a class name: ``" Gift  Giving"`` -> ``"gift giving"``."""
    return re.sub(r"[\s_]+", " ", name).strip().casefold()


@dataclass(frozen=True)
class Concept:
    """One concept of the catalog."""

    name: str
    definition: str = ""
    primary: bool = False


@dataclass(frozen=True)
class ClassCatalog:
    """The ordered list of concepts; their order is the column order of every label matrix."""

    concepts: tuple[Concept, ...]

    @classmethod
    def from_json(cls, path: str | Path) -> ClassCatalog:
        """Read a JSON list of ``{"class", "definition", "primary"}`` records."""
        records = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(records, list) or not records:
            raise ValueError(f"class catalog {path} must be a non-empty JSON list, got {type(records).__name__}")
        concepts = []
        for i, rec in enumerate(records):
            if not isinstance(rec, dict) or not isinstance(rec.get("class"), str):
                raise ValueError(f"class catalog {path} record {i} has no string 'class': {rec!r}")
            concepts.append(Concept(rec["class"].strip(), str(rec.get("definition", "")), bool(rec.get("primary", 0))))
        names = [normalize_class_name(c.name) for c in concepts]
        if len(set(names)) != len(names) or NONE_OF_THE_ABOVE in names:
            raise ValueError(f"class catalog {path} has duplicate names or lists {NONE_OF_THE_ABOVE!r}: {names}")
        return cls(tuple(concepts))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.concepts]

    def match(self, name: str) -> str | None:
        """The catalog's spelling of ``name``, ``NONE_OF_THE_ABOVE``, or None when unknown."""
        key = normalize_class_name(name)
        if key == NONE_OF_THE_ABOVE:
            return NONE_OF_THE_ABOVE
        for concept in self.concepts:
            if normalize_class_name(concept.name) == key:
                return concept.name
        return None

    def __len__(self) -> int:
        return len(self.concepts)
