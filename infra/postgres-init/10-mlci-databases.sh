#!/usr/bin/env bash
# Creates the databases and roles of MLflow and Prefect. The postgres image runs the scripts of
# /docker-entrypoint-initdb.d once, when it initialises an EMPTY data volume: changing a password
# in infra/.env later does not change it here (ALTER ROLE ... PASSWORD by hand, or start over
# with `docker compose ... down -v`, which deletes the volumes).
#
# Passwords come from the environment (MLFLOW_DB_PASSWORD, PREFECT_DB_PASSWORD) and reach psql
# through \getenv, never on a command line. They go into connection URLs, so they are limited to
# URL-safe characters: `openssl rand -hex 24` makes one.
set -euo pipefail

for var in MLFLOW_DB_PASSWORD PREFECT_DB_PASSWORD; do
    value="${!var:-}"
    if [[ -z "$value" ]]; then
        echo "error: $var is not set: set it in infra/.env" >&2
        exit 1
    fi
    if [[ "$value" == change-me* ]]; then
        echo "error: $var is still the placeholder of infra/.env.example: set a password (openssl rand -hex 24)" >&2
        exit 1
    fi
    if [[ "$value" =~ [^A-Za-z0-9._~-] ]]; then
        echo "error: $var has characters that need escaping in a URL: use letters, digits and . _ ~ - (openssl rand -hex 24)" >&2
        exit 1
    fi
done

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
\getenv mlflow_password MLFLOW_DB_PASSWORD
\getenv prefect_password PREFECT_DB_PASSWORD
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
CREATE ROLE prefect LOGIN PASSWORD :'prefect_password';
CREATE DATABASE prefect OWNER prefect;
REVOKE ALL ON DATABASE prefect FROM PUBLIC;
-- Prefect's migrations create pg_trgm (a trusted extension, which the owner may create);
-- created here by the superuser all the same.
\connect prefect
CREATE EXTENSION IF NOT EXISTS pg_trgm;
SQL
