"""The features flow on the Prefect test server: local threads, the CLI, and a real Dask cluster.

The Dask test starts ``distributed.LocalCluster`` with two worker processes; the workers report to
the test's Prefect server and read clips from the S3 server on loopback, and their features must
equal the serial library path's.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlci.features import (
    compute_features,
    list_quarantined,
    load_features,
    load_window_features,
    window_matrix,
)
from mlci.media import encode_clip

SR = 16000


def _clip(path, *, seconds, seed, freq):
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 220, 3)
    n = int(seconds * 15)
    frames = []
    for i in range(n):
        f = np.empty((48, 64, 3), np.uint8)
        f[:] = base
        f[:, (i * 3) % 56 : (i * 3) % 56 + 8] = 255 - base
        frames.append(f)
    t = np.arange(int(seconds * SR)) / SR
    audio = (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.normal(size=t.size)).astype(np.float32)
    encode_clip(path, frames=frames, fps=15, audio=audio, sample_rate=SR)
    return path


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("flow-clips")
    files = [_clip(d / f"c{i}.mp4", seconds=1.5 + 0.5 * (i % 3), seed=i, freq=300 + 150 * i) for i in range(5)]
    broken = d / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 and then nothing")
    return files + [broken]


def _fill(store, files):
    for f in files:
        store.upload(f"clips/flow/{f.name}", f)


def test_flow_on_threads_and_its_cli(prefect_harness, local_store, clip_files):
    import typer
    from typer.testing import CliRunner

    from cli.features import features_command
    from flows.features import features

    _fill(local_store, clip_files)
    app = typer.Typer()
    app.command("features")(features_command)
    app.command("unused")(lambda: None)  # two commands: typer keeps the sub-command name
    out = CliRunner().invoke(app, ["features", "--store", local_store.uri, "--chunk-size", "2", "--log-every", "2"])
    assert out.exit_code == 0, out.output
    assert "computed: 5, reused from cache: 0, newly quarantined: 1" in out.output
    assert "quarantined clips (1; retried when their content changes)" in out.output
    assert "clips/flow/broken.mp4  [truncated]" in out.output

    report = features(store=local_store.uri, chunk_size=2)  # again: nothing to do
    assert report.counts() == {
        "listed": 6, "computed": 0, "cached": 6, "quarantined": 1, "quarantined_new": 0,
        "active": 5, "removed": 0, "skipped": 0, "failed": 0, "failed_chunks": 0,
    }
    assert report.index_key is None
    assert list_quarantined(local_store)["key"].tolist() == ["clips/flow/broken.mp4"]


def test_cli_rejects_bad_parameters(local_store):
    import typer
    from typer.testing import CliRunner

    from cli.features import features_command, parse_params

    assert parse_params(["sample_fps=4", "skip_loop_filter=false", "name=x"]) == {
        "sample_fps": 4, "skip_loop_filter": False, "name": "x",
    }
    app = typer.Typer()
    app.command("features")(features_command)
    app.command("unused")(lambda: None)
    out = CliRunner().invoke(app, ["features", "--store", local_store.uri, "--param", "sample_fps"])
    assert out.exit_code == 1 and "--param must look like name=value, got 'sample_fps'" in out.output


@pytest.mark.slow
def test_dask_cluster_gives_the_serial_features(prefect_harness, s3_endpoint, s3_store, local_store, clip_files, monkeypatch):
    from distributed import LocalCluster

    from flows.features import features
    from flows.runners import worker_environment

    # The flow reads the endpoint from the settings (MLCI_*); workers get the settings object.
    monkeypatch.setenv("MLCI_S3_ENDPOINT_URL", s3_endpoint)
    _fill(s3_store, clip_files)
    _fill(local_store, clip_files)
    serial = compute_features(local_store)

    env = worker_environment()
    assert env.get("PREFECT_API_URL"), "workers must report to the test's Prefect server"
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, env=env
    ) as cluster:
        report = features(store=s3_store.uri, chunk_size=2, dask_address=cluster.scheduler_address)
    assert (report.n_computed, report.n_quarantined_new) == (serial.n_computed, serial.n_quarantined_new) == (5, 1)

    for modality in ("audio", "video", "combined"):
        k_dask, X_dask, _ = load_features(s3_store, modality=modality)
        k_serial, X_serial, _ = load_features(local_store, modality=modality)
        assert list(k_dask) == list(k_serial)
        np.testing.assert_allclose(X_dask, X_serial, atol=1e-6, rtol=0)
    w_dask, w_serial = load_window_features(s3_store), load_window_features(local_store)
    assert w_dask[["key", "window"]].equals(w_serial[["key", "window"]])
    np.testing.assert_allclose(window_matrix(w_dask, "audio"), window_matrix(w_serial, "audio"), atol=1e-6, rtol=0)
