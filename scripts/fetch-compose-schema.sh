#!/usr/bin/env bash
# Fetch the compose-spec JSON schema that `hypr compose` validates against. It is third-party (docker-compose,
# Apache-2.0), so it is not committed: `make setup` runs this script. It takes the file from the docker-compose
# 1.29.2 wheel on PyPI (through pip, so the usual pip configuration and caches apply).
# Usage: scripts/fetch-compose-schema.sh [PYTHON]   (default: .venv/bin/python). A second run is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-.venv/bin/python}
DEST=src/hypr/compose/_schema/compose_spec.json
[ -s "$DEST" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" docker-compose==1.29.2
mkdir -p "$(dirname "$DEST")"
"$PYTHON" - "$tmp" "$DEST" <<'PY'
import glob, json, sys, zipfile
wheel = glob.glob(f"{sys.argv[1]}/docker_compose-1.29.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("compose/config/compose_spec.json")
json.loads(data)  # refuse to install something that is not JSON
with open(sys.argv[2] + ".tmp", "wb") as f:
    f.write(data)
PY
mv "$DEST.tmp" "$DEST"
echo "compose schema: $DEST"
