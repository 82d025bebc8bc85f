"""The Label Studio project of a class catalog: found by title, created with the generated interface.

An existing project whose labeling interface does not match the catalog is refused with the
differences named: mlci never rewrites a project's interface (annotators may be mid-way).
"""

from __future__ import annotations

from typing import Any

from mlci.catalog import ClassCatalog
from mlci.labelstudio.exceptions import LabelStudioError
from mlci.labelstudio.interface import compare_labeling_config, labeling_config

__all__ = ["ProjectMismatchError", "ensure_project"]


class ProjectMismatchError(LabelStudioError):
    """The project's labeling interface does not match the class catalog."""


def ensure_project(
    client: Any, catalog: ClassCatalog, *, title: str, question: str, create: bool = True
) -> dict[str, Any]:
    """The project titled ``title``, created with :func:`labeling_config` when there is none and ``create``.

    Raises
    ------
    LabelStudioError
        No such project and not ``create``.
    ProjectMismatchError
        The project exists and its interface differs from the catalog's (each difference named).
    """
    project = client.find_project(title)
    if project is None and not create:
        raise LabelStudioError(f"no Label Studio project titled {title!r}: run `mlci labelstudio setup` first")
    if project is None:
        return client.create_project(
            title, labeling_config(catalog, question),
            description="Clips chosen by mlci's active-learning rounds; answers are pulled back nightly.",
        )
    differences = compare_labeling_config(project.get("label_config", ""), catalog)
    if differences:
        raise ProjectMismatchError(
            f"Label Studio project {title!r} (id {project['id']}) does not match the class catalog: "
            + "; ".join(differences)
            + ": fix the project's labeling interface, or set MLCI_LABEL_STUDIO_PROJECT to a new title"
        )
    return project
