#!/bin/sh
# One-shot job of infra/compose.yaml (image minio/mc): creates, on the `s3` service,
#   - the bucket of the mlci store ($MLCI_STORE_BUCKET) and of MLflow's artifacts ($MLFLOW_ARTIFACT_BUCKET);
#   - the user mlci's containers use ($MLCI_S3_ACCESS_KEY), allowed objects of the store bucket only;
#   - the user the MLflow server uses ($MLFLOW_S3_ACCESS_KEY), allowed objects of the artifact bucket only.
# Safe to run again: every step creates or updates (`docker compose ... up` runs it each time).
# No secret is ever put on a command line: the root credentials reach mc as MC_HOST_s3, the users'
# secret keys through a pipe.
set -eu

fail() { echo "error: $*" >&2; exit 1; }

for var in MINIO_ROOT_USER MINIO_ROOT_PASSWORD MLCI_STORE_BUCKET MLFLOW_ARTIFACT_BUCKET \
           MLCI_S3_ACCESS_KEY MLCI_S3_SECRET_KEY MLFLOW_S3_ACCESS_KEY MLFLOW_S3_SECRET_KEY; do
    eval "value=\${$var:-}"
    [ -n "$value" ] || fail "$var is not set: set it in infra/.env"
    case "$value" in
        change-me*) fail "$var is still the placeholder of infra/.env.example: set it (openssl rand -hex 24)" ;;
        *[!A-Za-z0-9._~-]*) fail "$var has characters that need escaping in a URL: use letters, digits and . _ ~ - (openssl rand -hex 24)" ;;
    esac
done
if [ "$MLCI_S3_ACCESS_KEY" = "$MINIO_ROOT_USER" ] || [ "$MLFLOW_S3_ACCESS_KEY" = "$MINIO_ROOT_USER" ]; then
    fail "MLCI_S3_ACCESS_KEY and MLFLOW_S3_ACCESS_KEY must differ from MINIO_ROOT_USER"
fi
[ "$MLCI_S3_ACCESS_KEY" != "$MLFLOW_S3_ACCESS_KEY" ] || fail "MLCI_S3_ACCESS_KEY and MLFLOW_S3_ACCESS_KEY must differ"

MC_HOST_s3="http://${MINIO_ROOT_USER}:${MINIO_ROOT_PASSWORD}@s3:9000"
export MC_HOST_s3

mc mb --ignore-existing "s3/${MLCI_STORE_BUCKET}" "s3/${MLFLOW_ARTIFACT_BUCKET}"

# grant USER_KEY USER_SECRET POLICY_NAME BUCKET: a policy allowing the objects of BUCKET, and a
# user with that policy.
grant() {
    policy_file="/tmp/$3.json"
    cat > "$policy_file" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::$4"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::$4/*"]
    }
  ]
}
JSON
    mc admin policy create s3 "$3" "$policy_file"
    printf '%s\n%s\n' "$1" "$2" | mc admin user add s3
    mc admin policy attach s3 "$3" --user "$1"
    rm -f "$policy_file"
}

grant "$MLCI_S3_ACCESS_KEY" "$MLCI_S3_SECRET_KEY" mlci-store "$MLCI_STORE_BUCKET"
grant "$MLFLOW_S3_ACCESS_KEY" "$MLFLOW_S3_SECRET_KEY" mlflow-artifacts "$MLFLOW_ARTIFACT_BUCKET"
echo "s3-init: buckets ${MLCI_STORE_BUCKET} and ${MLFLOW_ARTIFACT_BUCKET} ready"
