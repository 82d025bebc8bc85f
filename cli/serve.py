"""``mlci serve``: the nightly flow on its schedule, run by this process, for a team without a server.

Scheduling needs a Prefect API with its scheduler service; Prefect's temporary server has none. So
``serve`` uses the API the user configured (``PREFECT_API_URL`` or a Prefect profile) or starts
``prefect server start`` on 127.0.0.1 for as long as it runs, then serves the nightly with
:func:`flows.serving.serve_nightly`.
"""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from cli.common import (
    BatchSizeOption,
    LockTtlOption,
    RelabelShareOption,
    StoreOption,
    StrategyOption,
    configured_default,
    fail,
    open_store_for,
    run_settings,
)
from mlci.config import ScheduleSettings

__all__ = ["serve_command"]


def serve_command(
    cron: Annotated[Optional[str], typer.Option(help="Cron schedule of the nightly run.",
                                                show_default=configured_default(ScheduleSettings, "cron"))] = None,
    timezone: Annotated[Optional[str], typer.Option(help="Timezone of the cron schedule (IANA name).",
                                                    show_default=configured_default(ScheduleSettings, "timezone"))] = None,
    port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="Port of the Prefect server started on 127.0.0.1 when "
                     "PREFECT_API_URL is not set (0: any free port)."),
    ] = 4200,
    store: StoreOption = None,
    strategy: StrategyOption = None,
    batch_size: BatchSizeOption = None,
    relabel_share: RelabelShareOption = None,
    lock_ttl_hours: LockTtlOption = None,
) -> None:
    """Run the nightly flow on a schedule in this process; starts a local Prefect server if none is set.

    See docs/operations.md.
    """
    from pydantic import ValidationError

    options = dict(strategy=strategy, batch_size=batch_size, relabel_share=relabel_share, lock_ttl_hours=lock_ttl_hours)
    # A mistyped parameter, schedule or store fails now, not every night.
    settings = run_settings(store, **options, cron=cron, timezone=timezone)
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.settings import get_current_settings

    cron, timezone = settings.schedule.cron, settings.schedule.timezone
    try:
        schedule = CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as exc:
        fail(f"--cron {cron!r} --timezone {timezone!r}: {exc.errors()[0]['msg']}")
    open_store_for(settings)
    # Served runs are child processes, possibly in another directory: give them absolute locations.
    os.environ["MLCI_HOME"] = str(settings.home)
    # Only what was given on the command line: the rest is read from MLCI_* when each run starts.
    parameters = {"store": settings.store_uri, **{k: v for k, v in options.items() if v is not None}}

    configured = get_current_settings().api.url
    if configured:
        _serve(configured, schedule, parameters)
        return

    from mlci.orchestrator import LocalPrefectServer, PrefectServerError

    server = LocalPrefectServer(get_current_settings().home, port=port)
    typer.echo(f"starting a Prefect server on 127.0.0.1:{port or 'any free port'} "
               f"(first start migrates its database: up to a minute; log {server.log_path})")
    try:
        server.start()
    except PrefectServerError as exc:
        fail(str(exc))
    try:
        _serve(server.api_url, schedule, parameters)
    finally:
        server.stop()
        typer.echo("Prefect server stopped")


def _serve(api_url: str, schedule, parameters: dict) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # The served runs are child processes: they read the API from the environment.
    os.environ["PREFECT_API_URL"] = api_url
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        from flows.serving import serve_nightly

        serve_nightly(schedule, parameters, announce=typer.echo)
