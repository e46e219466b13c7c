#!/bin/sh
# oneshot: prepares /data/influxdb and writes the sidecar's configuration (no-op unless storage is
# sidecar). Called from ./up through with-contenv.
set -eu
# shellcheck source=rootfs/usr/local/lib/homeiq/env.sh
. /usr/local/lib/homeiq/env.sh
homeiq_prepare_influxdb
