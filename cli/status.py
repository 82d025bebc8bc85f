"""``mlci status``: one screen on where labeling stands.

The champion and its cross-validated metrics (MLflow), the labels per concept in the latest
consensus and the published batches with the answers that came back (the store), whether a run
holds the nightly lock, and the last and next nightly runs (Prefect). Each part is read on its
own: a source that cannot be read says so in its line and the others are still shown.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import typer

from cli.common import (
    JsonOption,
    StoreOption,
    describe,
    is_expected,
    open_store_for,
    print_json,
    settings_for,
)
from cli.console import quiet_prefect_and_mlflow
from mlci.redact import redact_url

__all__ = ["status_command"]

#: Nightly runs listed (newest first).
LAST_RUNS = 3


def status_command(
    store: StoreOption = None,
    prefect: bool = typer.Option(True, "--prefect/--no-prefect",
                                 help="Ask Prefect for the last and next nightly runs (starts a temporary server "
                                      "when none is configured)."),
    as_json: JsonOption = False,
) -> None:
    """Where labeling stands: champion, labels per concept, open batches, stop advice, the last and next nightly runs."""
    quiet_prefect_and_mlflow()
    settings = settings_for(store)
    target = open_store_for(settings)
    status: dict[str, Any] = {
        "store": redact_url(settings.store_uri),
        "tracking_uri": redact_url(settings.tracking_uri),
        "champion": _read(_champion, settings),
        "labels": _read(_labels, target),
        "batches": _read(_batches, target),
        "advice": _read(_advice, target, settings.registered_model_name),
        "lock": _read(_lock, target),
        "nightly_runs": _read(_nightly_runs) if prefect else {"problem": "not asked (--no-prefect)"},
    }
    if as_json:
        print_json(status)
        return
    for line in _lines(status):
        typer.echo(line)


def _read(read, *args) -> Any:
    # One unreadable source (MLflow down, no consensus yet) must not hide the others.
    try:
        return read(*args)
    except Exception as exc:
        if not is_expected(exc):
            raise
        return {"problem": describe(exc)}


def _champion(settings) -> dict | None:
    from mlci.models.versions import CHAMPION, list_versions

    versions = list_versions(settings.tracking_uri, settings.registered_model_name)
    champion = next((v for v in versions if CHAMPION in v.aliases), None)
    if champion is None:
        return None
    return {
        "name": champion.name, "version": int(champion.version), "run_id": champion.run_id,
        "registered_at": datetime.fromtimestamp(champion.created_at_ms / 1000, timezone.utc),
        "cv_metrics": champion.metrics, "versions": len(versions),
    }


def _labels(target) -> dict | None:
    from mlci.consensus import load_consensus_result
    from mlci.consensus.exceptions import SnapshotNotFoundError

    try:
        result = load_consensus_result(target)
    except SnapshotNotFoundError:
        return None
    labels = result.labels
    per_class = labels.groupby("class", observed=True)["label"].agg(positive="sum", labeled="count")
    return {
        "snapshot": result.snapshot, "method": result.method, "clips": int(labels["asset"].nunique()),
        "per_concept": {str(c): {"positive": int(r.positive), "negative": int(r.labeled - r.positive)}
                        for c, r in per_class.iterrows()},
    }


def _batches(target) -> list[dict]:
    from mlci.batches import list_batches
    from mlci.labels import load_annotations

    listing = list_batches(target, load_annotations(target, current=False))
    return listing.to_dict(orient="records")


def _advice(target, model_name: str) -> dict | None:
    from mlci.advisor import load_advice

    night = load_advice(target, model_name)
    if night is None:
        return None
    return {"model_version": night.model_version, "rule": night.rule,
            "concepts": night.advice.replace({float("nan"): None}).to_dict(orient="records")}


def _lock(target) -> str | None:
    from mlci.locks import StoreLock

    holder = StoreLock(target, "nightly").holder()
    return None if holder is None or holder.released else holder.describe()


def _nightly_runs() -> dict:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    nightly = FlowFilter(name=FlowFilterName(any_=["nightly"]))
    scheduled = [StateType.SCHEDULED]
    with get_client(sync_client=True) as client:
        last = client.read_flow_runs(
            flow_filter=nightly, limit=LAST_RUNS, sort=FlowRunSort.START_TIME_DESC,
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=scheduled))))
        upcoming = client.read_flow_runs(
            flow_filter=nightly, limit=1, sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=scheduled))))
    return {
        "last": [{"name": r.name, "state": r.state_name, "started_at": r.start_time or r.expected_start_time,
                  "seconds": round(r.total_run_time.total_seconds())} for r in last],
        "next": upcoming[0].expected_start_time if upcoming else None,
    }


def _lines(status: dict) -> list[str]:
    """The screen: one labelled line per fact, problems in place of what could not be read."""
    out = [f"store      {status['store']}", f"MLflow     {status['tracking_uri']}"]
    champion = status["champion"]
    if champion is None:
        out.append("champion   none yet (run `mlci nightly` or `mlci train`)")
    elif "problem" in champion:
        out.append(f"champion   unknown: {champion['problem']}")
    else:
        m = champion["cv_metrics"]
        out.append(f"champion   {champion['name']} v{champion['version']} (of {champion['versions']}), registered "
                   f"{_when(champion['registered_at'])}: cv macro AP {_num(m.get('macro_ap'))}, "
                   f"ROC AUC {_num(m.get('macro_roc_auc'))}, F1 {_num(m.get('macro_f1'))}")
    labels = status["labels"]
    if labels is None:
        out.append("labels     no consensus yet")
    elif "problem" in labels:
        out.append(f"labels     unknown: {labels['problem']}")
    else:
        out.append(f"labels     {labels['clips']} clips in snapshot {labels['snapshot']} ({labels['method']}); "
                   "positive/negative per concept:")
        width = max(len(c) for c in labels["per_concept"]) if labels["per_concept"] else 0
        out += [f"             {c:<{width}}  {n['positive']:>5} / {n['negative']:<5}"
                for c, n in labels["per_concept"].items()]
    batches = status["batches"]
    if isinstance(batches, dict):
        out.append(f"batches    unknown: {batches['problem']}")
    else:
        open_ = [b for b in batches if b["n_returned"] < b["n_clips"]]
        out.append(f"batches    {len(batches)} published, {len(open_)} open"
                   + (":" if open_ else ""))
        out += [f"             {b['round_id']}  {_when(b['created_at'])}  {b['n_returned']}/{b['n_clips']} answered"
                for b in open_[-5:]]
    advice = status["advice"]
    if advice is None:
        out.append("advice     none yet (the nightly advises per concept after it trains)")
    elif "problem" in advice:
        out.append(f"advice     unknown: {advice['problem']}")
    else:
        out.append(f"advice     for v{advice['model_version']} ({advice['rule']}; docs/advisor.md):")
        width = max(len(c["concept"]) for c in advice["concepts"])
        out += [f"             {c['concept']:<{width}}  {c['verdict']:<13}  {c['reason'].split('; ')[0]}"
                for c in advice["concepts"]]
    lock = status["lock"]
    if lock:
        out.append(f"running    {lock['problem'] if isinstance(lock, dict) else 'nightly lock held by ' + lock}")
    runs = status["nightly_runs"]
    if "problem" in runs:
        out.append(f"nightly    unknown: {runs['problem']}")
    else:
        if not runs["last"]:
            out.append("nightly    no run yet")
        for i, r in enumerate(runs["last"]):
            out.append(f"{'nightly' if i == 0 else '':<10} {r['name']}  {r['state']}  {_when(r['started_at'])}"
                       f"  ({r['seconds']} s)")
        out.append(f"next run   {_when(runs['next']) if runs['next'] else 'none scheduled (see `mlci serve`)'}")
    return out


def _when(value) -> str:
    if value is None:
        return "-"
    value = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"
