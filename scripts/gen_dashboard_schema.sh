#!/usr/bin/env bash
# Regenerate config/grafana/dashboard.schema.json from Grafana's own TypeScript types.
# Grafana publishes no JSON Schema for dashboards; npm @grafana/schema ships the
# TypeScript types that Grafana itself is built from, and ts-json-schema-generator
# turns the Dashboard type into a JSON Schema that tests/test_dashboard.py
# validates config/grafana/tidegate-dashboard.json against. Needs node + npm; runs
# in a temporary directory, so nothing lands in the repository but the schema.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
GRAFANA_SCHEMA_VERSION="${GRAFANA_SCHEMA_VERSION:-13.2.3}"
GENERATOR_VERSION="${GENERATOR_VERSION:-2.4.0}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --silent --no-audit --no-fund "@grafana/schema@$GRAFANA_SCHEMA_VERSION" \
  "ts-json-schema-generator@$GENERATOR_VERSION" typescript
npx ts-json-schema-generator --no-type-check --type Dashboard \
  --path node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts -o raw.json
python3 - "$repo/config/grafana/dashboard.schema.json" "$GRAFANA_SCHEMA_VERSION" "$GENERATOR_VERSION" <<'PY'
import json, sys
out, schema_version, generator_version = sys.argv[1:]
raw = json.load(open("raw.json"))
doc = {"$comment": f"Grafana dashboard JSON Schema generated from npm @grafana/schema {schema_version} "
       f"(raw/dashboard/x/types.gen.d.ts, type Dashboard) with ts-json-schema-generator {generator_version}; "
       "regenerate with scripts/gen_dashboard_schema.sh. Used by tests/test_dashboard.py."}
doc.update(raw)
open(out, "w").write(json.dumps(doc, indent=2) + "\n")
print(f"wrote {out}")
PY
