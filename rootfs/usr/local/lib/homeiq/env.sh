# shellcheck shell=sh
# HomeIQ's start-up logic, shared by the s6-overlay services (rootfs/etc/s6-overlay/s6-rc.d/*) and
# addon/run-local, so both run the same command lines. POSIX sh + jq; source it, then call one of
# the homeiq_* functions. Paths can be overridden for a local run:
#   HOMEIQ_DATA_DIR      persistent data, the add-on's /data           (default /data)
#   HOMEIQ_OPTIONS_FILE  add-on options written by the Supervisor      (default $HOMEIQ_DATA_DIR/options.json)
#   HOMEIQ_SIDECAR_PORT  HTTP port of the sidecar influxd, on 127.0.0.1 (default 8086)
#   HOMEIQ_HTTP_PORT     HomeIQ's port, the ingress port               (default 8099)
#   HOMEIQ_BIN           the homeiq binary                             (default /usr/bin/homeiq)
#   INFLUXD_BIN          the influxd binary                            (default influxd)

: "${HOMEIQ_DATA_DIR:=/data}"
: "${HOMEIQ_OPTIONS_FILE:=$HOMEIQ_DATA_DIR/options.json}"
: "${HOMEIQ_SIDECAR_PORT:=8086}"
: "${HOMEIQ_HTTP_PORT:=8099}"
: "${HOMEIQ_BIN:=/usr/bin/homeiq}"
: "${INFLUXD_BIN:=influxd}"
HOMEIQ_INFLUX_DIR="$HOMEIQ_DATA_DIR/influxdb"
HOMEIQ_INFLUX_CONF="$HOMEIQ_INFLUX_DIR/influxdb.conf"

homeiq_log() {
    echo "[homeiq-addon] $*" >&2
}

# The `storage` option: sidecar | external | embedded. Only `sidecar` starts InfluxDB; `embedded`
# keeps history in /data/history.db (SQLite) and needs no InfluxDB at all.
homeiq_storage() {
    mode=sidecar
    if [ -f "$HOMEIQ_OPTIONS_FILE" ]; then
        mode=$(jq -r '.storage // "sidecar"' "$HOMEIQ_OPTIONS_FILE" 2>/dev/null || echo sidecar)
    fi
    case "$mode" in
        sidecar | external | embedded) echo "$mode" ;;
        *)
            homeiq_log "unknown storage '$mode': using the InfluxDB sidecar"
            echo sidecar
            ;;
    esac
}

homeiq_sidecar_url() {
    echo "http://127.0.0.1:$HOMEIQ_SIDECAR_PORT"
}

# oneshot influxdb-prepare: directories and the influxd configuration (sidecar mode only)
homeiq_prepare_influxdb() {
    if [ "$(homeiq_storage)" != sidecar ]; then
        homeiq_log "storage is $(homeiq_storage): the InfluxDB sidecar stays off"
        return 0
    fi
    mkdir -p "$HOMEIQ_INFLUX_DIR/meta" "$HOMEIQ_INFLUX_DIR/data" "$HOMEIQ_INFLUX_DIR/wal"
    tmp="$HOMEIQ_INFLUX_CONF.tmp"
    cat > "$tmp" <<CONF
# generated at every start by HomeIQ (rootfs/usr/local/lib/homeiq/env.sh): edits are lost
reporting-disabled = true
bind-address = "127.0.0.1:$((HOMEIQ_SIDECAR_PORT + 2))"

[meta]
  dir = "$HOMEIQ_INFLUX_DIR/meta"

[data]
  dir = "$HOMEIQ_INFLUX_DIR/data"
  wal-dir = "$HOMEIQ_INFLUX_DIR/wal"
  index-version = "tsi1"
  query-log-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$HOMEIQ_SIDECAR_PORT"
  log-enabled = false

[monitor]
  store-enabled = false
CONF
    mv "$tmp" "$HOMEIQ_INFLUX_CONF"
    homeiq_log "InfluxDB sidecar prepared in $HOMEIQ_INFLUX_DIR (127.0.0.1:$HOMEIQ_SIDECAR_PORT)"
}

# longrun influxdb: replaces the shell with influxd (sidecar mode); returns 1 otherwise
homeiq_exec_influxd() {
    if [ "$(homeiq_storage)" != sidecar ]; then
        return 1
    fi
    exec "$INFLUXD_BIN" -config "$HOMEIQ_INFLUX_CONF"
}

# waits up to $1 seconds (default 60) for the sidecar to answer /ping; a later start is not fatal
# (HomeIQ spools and retries), it only makes the first minute quieter
homeiq_wait_sidecar() {
    [ "$(homeiq_storage)" = sidecar ] || return 0
    i=0
    while [ "$i" -lt "${1:-60}" ]; do
        if curl -sf -o /dev/null "$(homeiq_sidecar_url)/ping"; then
            return 0
        fi
        i=$((i + 1))
        sleep 1
    done
    homeiq_log "InfluxDB sidecar not answering yet: HomeIQ starts anyway and retries"
}

# the environment HomeIQ runs with; options.json is read by the binary itself
homeiq_export_env() {
    export HOMEIQ_DATA_DIR HOMEIQ_OPTIONS_FILE
    export HOMEIQ_HTTP__PORT="$HOMEIQ_HTTP_PORT"
    if [ "$(homeiq_storage)" = sidecar ]; then
        HOMEIQ_INFLUXDB__URL=$(homeiq_sidecar_url)
        export HOMEIQ_INFLUXDB__URL
    fi
    # SUPERVISOR_TOKEN passes through unchanged (with-contenv under s6; inherited locally)
}

# longrun homeiq: replaces the shell with HomeIQ
homeiq_exec_app() {
    homeiq_export_env
    homeiq_wait_sidecar 60
    exec "$HOMEIQ_BIN" serve
}

# finish scripts: a crash (non-zero exit) halts the container, so the Supervisor's watchdog
# restarts the add-on; arguments are s6's: exit code (256 when killed by a signal) and signal
homeiq_finish() {
    service=$1
    code=$2
    signal=$3
    results=/run/s6-linux-init-container-results/exitcode
    container_code=0
    if [ -f "$results" ]; then
        container_code=$(cat "$results")
    fi
    homeiq_log "service $service exited with code $code (signal $signal)"
    if [ "$code" -eq 256 ]; then
        if [ "${container_code:-0}" -eq 0 ]; then
            echo $((128 + signal)) > "$results"
        fi
        # SIGTERM from outside s6 (not a stop of the container): take the add-on down as well
        if [ "$signal" -eq 15 ]; then
            exec /run/s6/basedir/bin/halt
        fi
    elif [ "$code" -ne 0 ]; then
        if [ "${container_code:-0}" -eq 0 ]; then
            echo "$code" > "$results"
        fi
        exec /run/s6/basedir/bin/halt
    fi
}
