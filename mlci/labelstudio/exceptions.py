"""Errors of the Label Studio client; each message is one line saying what happened and what to do.

No message ever holds a token: URLs go through :func:`mlci.redact.redact_url`, and text that comes
back from the server is scrubbed of the client's tokens before it is put in a message.
"""

from __future__ import annotations

__all__ = [
    "LabelStudioError",
    "LabelStudioUnreachableError",
    "NotLabelStudioError",
    "LabelStudioAuthError",
    "ProjectNotFoundError",
    "AmbiguousProjectError",
    "LabelStudioRequestError",
]


class LabelStudioError(Exception):
    """Base class of every Label Studio client error."""


class LabelStudioUnreachableError(LabelStudioError):
    """No answer (connection refused, timeout, 5xx or 429) after every attempt."""

    def __init__(self, url: str, attempts: int, reason: str):
        self.url, self.attempts, self.reason = url, attempts, reason
        super().__init__(
            f"Label Studio at {url} did not answer after {attempts} attempt(s) ({reason}): "
            "check that the server is running and MLCI_LABEL_STUDIO_URL points at it"
        )


class NotLabelStudioError(LabelStudioError):
    """Something answered at the URL, but not Label Studio's API (an HTML page, a 404 without JSON)."""

    def __init__(self, url: str, detail: str):
        self.url, self.detail = url, detail
        super().__init__(
            f"{url} does not answer like a Label Studio server ({detail}): "
            "check MLCI_LABEL_STUDIO_URL (the address of Label Studio itself, e.g. http://host:8080)"
        )


class LabelStudioAuthError(LabelStudioError):
    """Label Studio rejected the token (HTTP 401). Never retried."""

    def __init__(self, url: str, token_kind: str, detail: str):
        self.url, self.token_kind, self.detail = url, token_kind, detail
        super().__init__(
            f"Label Studio at {url} rejected the {token_kind} ({detail}): set MLCI_LABEL_STUDIO_TOKEN to a "
            "valid token from Label Studio's Account & Settings page"
        )


class ProjectNotFoundError(LabelStudioError, LookupError):
    """No project with this id, or not one the token's user may see."""

    def __init__(self, url: str, project_id: int):
        self.url, self.project_id = url, project_id
        super().__init__(
            f"no project {project_id} in Label Studio at {url} (or the token's user is not a member): "
            "check the project id"
        )


class AmbiguousProjectError(LabelStudioError):
    """Several projects carry the title looked up."""

    def __init__(self, url: str, title: str, project_ids: list[int]):
        self.url, self.title, self.project_ids = url, title, project_ids
        super().__init__(
            f"{len(project_ids)} projects titled {title!r} in Label Studio at {url} (ids {project_ids}): "
            "rename or delete all but one"
        )


class LabelStudioRequestError(LabelStudioError):
    """Label Studio refused a request (a 4xx other than 401), with its own explanation."""

    def __init__(self, url: str, method: str, path: str, status: int, detail: str):
        self.url, self.method, self.path, self.status, self.detail = url, method, path, status, detail
        super().__init__(
            f"Label Studio at {url} refused {method} {path} with HTTP {status}: {detail}"
        )
