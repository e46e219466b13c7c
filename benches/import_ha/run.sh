#!/usr/bin/env bash
# Measures the import of Home Assistant's past (README, "Importing Home Assistant's past").
#
#   benches/import_ha/run.sh HA_DIR RPS [SEED]
#
# HA_DIR is a Home Assistant started with ../shared/ha/start-ha (its ha.env is read). With SEED
# (e.g. "20 300 365": sensors, states each, days of hourly statistics) the recorder is seeded first
# through HA's Python (aiohttp) — wait until its recorder has committed the statistics (minutes).
# Then a fresh `homeiq serve` (target/debug/homeiq, embedded storage, only sensor.bench_*) imports
# and the per-phase log lines are printed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ha_dir=${1:?usage: run.sh HA_DIR RPS [SEED]}
rps=${2:?usage: run.sh HA_DIR RPS [SEED]}
set -a
# shellcheck disable=SC1091
source "$ha_dir/ha.env"
set +a
if [[ -n ${3:-} ]]; then
  python=${HA_VENV_PYTHON:-$HOME/.cache/homeiq-ha/2025.4.4/bin/python}
  # shellcheck disable=SC2086
  "$python" "$here/seed.py" $3
fi
bin=${HOMEIQ_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/homeiq}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env -i PATH="$PATH" HOMEIQ_OPTIONS_FILE="$d/none.json" HOMEIQ_DATA_DIR="$d/data" HOMEIQ_STORAGE=embedded \
  HOMEIQ_HTTP__BIND=127.0.0.1 HOMEIQ_HTTP__PORT="$port" HOMEIQ_HA__URL="$HA_URL" HOMEIQ_HA__TOKEN="$HA_TOKEN" \
  HOMEIQ_INCLUDE__ENTITY_GLOBS='sensor.bench_*' HOMEIQ_IMPORT__REQUESTS_PER_SECOND="$rps" \
  HOMEIQ_ANALYSIS__ENABLED=false HOMEIQ_LOG_LEVEL=info "$bin" serve > "$d/log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q "import ended" "$d/log" && break; sleep 1; done
grep -E "import phase finished|import ended" "$d/log" | sed 's/\x1b\[[0-9;]*m//g'
kill -TERM "$pid"; wait "$pid" || true
