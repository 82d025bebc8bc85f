#!/usr/bin/env bash
# Command of the prefect-worker service of infra/compose.yaml (mlci image): the work pool of
# prefect.yaml if missing, the deployments of prefect.yaml (`nightly`, `analysis`), then the
# worker. The worker's health server (--with-healthcheck) listens on the container's loopback,
# PREFECT_WORKER_WEBSERVER_HOST / _PORT, where the compose health check asks /health.
set -euo pipefail

pool=mlci-process   # = the work pool of prefect.yaml

: "${PREFECT_API_URL:?PREFECT_API_URL is not set}"
: "${MLCI_PROJECT_DIR:?MLCI_PROJECT_DIR is not set}"

if prefect work-pool inspect "$pool" >/dev/null 2>&1; then
    echo "work pool $pool exists"
else
    prefect work-pool create "$pool" --type process
fi

cd "$MLCI_PROJECT_DIR"
prefect --no-prompt deploy --all

exec prefect worker start --pool "$pool" --type process --with-healthcheck
