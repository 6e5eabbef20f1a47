#!/usr/bin/env bash
# Run by the postgres image's entrypoint on the first initialisation of the data volume
# (docker-entrypoint-initdb.d): the roles, database and schema of deploy/k8s/db/roles.sql.
set -euo pipefail
psql -X -q -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v db=kizuna -v schema=kizuna \
  -v owner=kizuna_owner -v owner_password="$KIZUNA_OWNER_PASSWORD" \
  -v app=kizuna_app -v app_password="$KIZUNA_APP_PASSWORD" \
  -f /kizuna-db/roles.sql
echo "kizuna: roles kizuna_owner (migrations) and kizuna_app (runtime) and database kizuna ready"
