#!/usr/bin/env bash
# Two "pods" that share no file, one PostgreSQL: a refresh killed in the first is finished by the second.
# Run from the repository after `python3 scripts/dev.py test` (which installs the postgres extra):
#     PG=postgresql://127.0.0.1:5432/test bash docs/examples/two-pods.sh
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PG=${PG:?set PG to a PostgreSQL database URL, e.g. postgresql://127.0.0.1:5432/test}
WORK=$(mktemp -d)
"$REPO/.venv/bin/sync-assets" demo-api --port 8765 --token demo-token --latency-ms 250 --customers 4500 &
API=$!
trap 'kill $API 2>/dev/null; rm -rf "$WORK"' EXIT
sleep 1

for pod in pod-a pod-b; do                      # each pod: its own empty home with the instance's settings
  mkdir -p "$WORK/$pod/dagster_home"
  cat > "$WORK/$pod/dagster_home/dagster.yaml" <<'YAML'
storage:
  postgres:
    postgres_url: {env: DAGSTER_POSTGRES_URL}   # Dagster's runs and events, in PostgreSQL
telemetry:
  enabled: false
YAML
  cat > "$WORK/$pod/run.sh" <<SH
cd "$WORK/$pod"
export DAGSTER_HOME="$WORK/$pod/dagster_home"
export DAGSTER_POSTGRES_URL="${PG/postgresql:\/\//postgresql+psycopg2://}"   # dagster-postgres uses psycopg2
export SYNC_ASSETS_STORE_URL="$PG"          # records, staging, page checkpoints and sync state
export SYNC_ASSETS_RATE_LIMIT_URL="$PG"     # the request budget, shared by every pod
export SYNC_ASSETS_DEMO_URL=http://127.0.0.1:8765 SYNC_ASSETS_DEMO_TOKEN=demo-token
exec "$REPO/.venv/bin/sync-assets-dagster" start-refresh -m sync_assets.definitions --select demo/customers
SH
done

pages() { psql "$PG" -Atc "SELECT coalesce(sum(pages), 0) FROM sync_assets.sync_stages" 2>/dev/null || echo 0; }
api() { "$REPO/.venv/bin/python" -c "import json, sys, urllib.request as u; r = u.urlopen(u.Request(
    'http://127.0.0.1:8765/stats' + sys.argv[1], method=sys.argv[2])); print(json.load(r).get('requests', ''))" "$@"; }

setsid bash "$WORK/pod-a/run.sh" > "$WORK/pod-a.log" 2>&1 &
POD_A=$!
until [ "$(pages)" -ge 3 ]; do sleep 0.2; done  # a few pages in (each page takes 250 ms here)
kill -KILL -- "-$POD_A"                         # the pod is lost: its CLI and its step process, at once
echo "pod-a killed; pages committed: $(pages) of 9"
api /reset POST > /dev/null

bash "$WORK/pod-b/run.sh" > "$WORK/pod-b.log" 2>&1
echo "pod-b finished the refresh from there, with $(api "" GET) requests"
psql "$PG" -c "SELECT count(*) AS customers, count(DISTINCT id) AS distinct_ids FROM demo.customers"
