"""Flow run names people can read in the Prefect UI (instead of Prefect's random adjective-animal).

A scheduled nightly is ``nightly-2026-11-30``; a manual one ``nightly-2026-11-30-manual``; the
other flows ``<flow>-<UTC day>-<HHMM>``, since they run several times a day.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

__all__ = ["dated_run_name", "nightly_run_name"]


def dated_run_name(flow: str) -> Callable[[], str]:
    """A ``flow_run_name`` callable: ``<flow>-<UTC day>-<HHMM>``."""

    def name() -> str:
        return f"{flow}-{datetime.now(timezone.utc):%Y-%m-%d-%H%M}"

    return name


def nightly_run_name() -> str:
    """``nightly-<UTC day>``, with ``-manual`` when a person started it (``trigger="manual"``)."""
    from prefect.runtime import flow_run

    trigger = flow_run.parameters.get("trigger", "nightly")
    return f"nightly-{datetime.now(timezone.utc):%Y-%m-%d}" + ("" if trigger == "nightly" else f"-{trigger}")
