"""Serve the nightly flow on a schedule from this process: what ``mlci serve`` runs.

The deployment is ``nightly/mlci-serve``, never ``prefect.yaml``'s ``nightly/nightly``. Each
scheduled run executes in a child process; Ctrl-C and SIGTERM both stop the runner through its own
``astop`` (cancelling a run in flight) and pause the schedule, so no runs pile up while nothing
serves them; the next ``serve`` resumes it.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, FlowRunFilter
from prefect.client.schemas.schedules import CronSchedule
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments.runner import EntrypointType
from prefect.runner import Runner
from prefect.settings import get_current_settings

from flows.nightly import nightly

__all__ = ["DEPLOYMENT_NAME", "GracefulRunner", "next_scheduled_run", "serve_nightly"]

DEPLOYMENT_NAME = "mlci-serve"


class GracefulRunner(Runner):
    """A Prefect Runner that stops the same way on Ctrl-C and on SIGTERM, whenever the signal comes.

    Call :meth:`catch_signals` before anything else: a signal that arrives while the deployment is
    still being created then stops the runner as soon as it starts (and pauses its schedule).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._stop_requested = threading.Event()
        self._wake: asyncio.Event | None = None
        self._signal_loop: asyncio.AbstractEventLoop | None = None

    def catch_signals(self) -> None:
        """Route SIGINT and SIGTERM to :meth:`request_stop` (main thread only)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.request_stop)

    def request_stop(self, *args: Any) -> None:
        self._stop_requested.set()
        if self._signal_loop is not None:
            self._signal_loop.call_soon_threadsafe(self._wake.set)

    # Prefect 3.8.8's own handler calls the async ``stop`` without awaiting it.
    handle_sigterm = request_stop

    async def serve_until_stopped(self) -> None:
        """Poll for and execute scheduled runs until a stop is requested."""
        # Not asyncio's default Ctrl-C handling: it cancels the main task, and a cancellation that
        # lands while a finished run is being reaped can be swallowed, so the runner kept polling.
        self._wake = asyncio.Event()
        self._signal_loop = asyncio.get_running_loop()
        self._signal_loop.add_signal_handler(signal.SIGINT, self.request_stop)
        if self._stop_requested.is_set():
            self._wake.set()
        serving = asyncio.create_task(self.start())
        woken = asyncio.create_task(self._wake.wait())
        await asyncio.wait({serving, woken}, return_when=asyncio.FIRST_COMPLETED)
        while not self.started and not serving.done():  # a stop asked for before start() began
            await asyncio.sleep(0.05)
        if not serving.done():
            await self.astop()  # leaving ``start`` then pauses the schedule
        woken.cancel()
        await serving


def next_scheduled_run(deployment_id: UUID, wait: float = 10.0) -> str:
    """When the server has the deployment's next run on its calendar (proof the schedule is live)."""
    deadline = time.monotonic() + wait
    with get_client(sync_client=True) as client:
        # The server schedules a new deployment's runs just after creating it.
        while not (runs := client.read_flow_runs(
            deployment_filter=DeploymentFilter(id={"any_": [deployment_id]}),
            flow_run_filter=FlowRunFilter(state={"type": {"any_": ["SCHEDULED"]}}),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=1,
        )) and time.monotonic() < deadline:
            time.sleep(1)
    if not runs:
        return "not scheduled yet (the server's scheduler adds it within a minute)"
    return f"{runs[0].expected_start_time:%Y-%m-%d %H:%M:%S %Z}"


def serve_nightly(schedule: CronSchedule, parameters: dict[str, Any], announce=print) -> None:
    """Create or update ``nightly/mlci-serve`` on the current Prefect API and serve it until stopped."""
    runner = GracefulRunner(name=DEPLOYMENT_NAME, limit=1, pause_on_shutdown=True)
    runner.catch_signals()
    deployment_id = runner.add_flow(
        nightly,
        name=DEPLOYMENT_NAME,
        schedule=schedule,
        parameters=parameters,
        concurrency_limit=1,
        # The flows package is installed: a module path works from any working directory.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    announce(f"serving nightly/{DEPLOYMENT_NAME}: cron '{schedule.cron}' ({schedule.timezone}); "
             f"next run {next_scheduled_run(deployment_id)}")
    ui_url = get_current_settings().ui_url or get_current_settings().api.url.removesuffix("/api")
    announce(f"Prefect UI: {ui_url}/deployments/deployment/{deployment_id}  (stop with Ctrl-C)")
    asyncio.run(runner.serve_until_stopped())
