"""Benchmark: how fast the listing commands answer, against the same commands loading what they used to.

On a small demo home (40 clips, one nightly run: a SQLite MLflow store, a folder store), each command
runs as a fresh process, as a user types it; the best of ``--repeat`` runs is kept (the first run of
a fresh process pays the OS's file cache, not mlci). The baseline is the same process importing the
libraries the listings used to import — ``mlci.models`` with scikit-learn and MLflow's client, and
the batch planner — measured in the same run, so the ratio says what the lazy imports and the
direct SQLite read buy on this machine. Target: about a second per listing.

Usage: ``.venv/bin/python benchmarks/cli.py [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
#: What ``mlci models`` and ``mlci batches`` imported before: the whole models package (scikit-learn,
#: MLflow) and the batch planner (consensus, strategies).
BASELINE_IMPORTS = "import mlci.models.registry, mlflow.tracking, mlci.batches.plan, cli"


def _best(command: list[str], env: dict[str, str], cwd: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlci-bench-cli-") as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCI_", "MLFLOW_", "PREFECT_"))}
        env.update(MLCI_HOME=str(root / "home"), MLCI_STORE=str(root / "store"))
        mlci = str(BIN / "mlci")
        print("preparing a demo home (40 clips, one nightly run) ...", flush=True)
        for command in ([mlci, "demo-data", "--clips", "40", "--duration", "1.5", "--size", "64x48",
                         "--video-minutes", "0"], [mlci, "nightly", "--batch-size", "8"]):
            subprocess.run(command, env=env, cwd=root, check=True, capture_output=True)

        python = _best([sys.executable, "-c", "pass"], env, root, args.repeat)
        baseline = _best([sys.executable, "-c", BASELINE_IMPORTS], env, root, args.repeat)
        print(f"python start-up                     {python:6.2f} s")
        print(f"baseline: imports the listings used {baseline:6.2f} s")
        for name, command in [("mlci --help", [mlci, "--help"]), ("mlci models", [mlci, "models"]),
                              ("mlci batches", [mlci, "batches"]), ("mlci models --json", [mlci, "models", "--json"]),
                              ("mlci status --no-prefect", [mlci, "status", "--no-prefect"])]:
            seconds = _best(command, env, root, args.repeat)
            print(f"{name:<35}{seconds:6.2f} s   {seconds / baseline:5.2f}x the baseline")


if __name__ == "__main__":
    main()
