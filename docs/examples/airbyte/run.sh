#!/usr/bin/env bash
# The bundled demo source under Airbyte's protocol, against the local demo API: spec, check, discover,
# a read, and a second read that continues from the first one's state. Run from the repository root
# after `python3 scripts/dev.py demo` (or any install of the package into .venv):
#     bash docs/examples/airbyte/run.sh
set -euo pipefail
HERE=docs/examples/airbyte
OUT=$(mktemp -d)
.venv/bin/sync-assets demo-api --port 0 --token demo-token --surveys 400 --customers 230 > "$OUT/api.txt" &
API=$!
trap 'kill $API' EXIT
sleep 1.5
URL=$(grep -o 'http://[0-9.:]*' "$OUT/api.txt")
# The config holds what the source reads from the environment elsewhere (spec lists the names).
echo "{\"SYNC_ASSETS_DEMO_URL\": \"$URL\", \"SYNC_ASSETS_DEMO_TOKEN\": \"demo-token\", \"start_date\": \"2024-06-01\"}" \
  > "$OUT/config.json"
SOURCE=sync_assets/sources/demo.yaml
.venv/bin/sync-assets airbyte $SOURCE spec | head -c 300; echo
.venv/bin/sync-assets airbyte $SOURCE check --config "$OUT/config.json"
.venv/bin/sync-assets airbyte $SOURCE discover --config "$OUT/config.json" | head -c 300; echo
.venv/bin/sync-assets airbyte $SOURCE read --config "$OUT/config.json" --catalog $HERE/configured_catalog.json \
  > "$OUT/first.jsonl"
# The last STATE of each stream is what the next read starts from.
.venv/bin/python - "$OUT/first.jsonl" "$OUT/state.json" <<'PY'
import json, sys
last = {}
for line in open(sys.argv[1]):
    message = json.loads(line)
    if message["type"] == "STATE":
        last[message["state"]["stream"]["stream_descriptor"]["name"]] = message
json.dump(list(last.values()), open(sys.argv[2], "w"), indent=1)
PY
.venv/bin/sync-assets airbyte $SOURCE read --config "$OUT/config.json" --catalog $HERE/configured_catalog.json \
  --state "$OUT/state.json" > "$OUT/second.jsonl"
for read in first second; do
  echo "$read read: $(grep -c '"type":"RECORD","record":{"namespace":"demo","stream":"surveys"' "$OUT/$read.jsonl" || true) surveys," \
       "$(grep -c '"stream":"customers"' "$OUT/$read.jsonl" || true) customer records"
done
echo "state after the first read:"; cat "$OUT/state.json"
