# syntax=docker/dockerfile:1
# HomeIQ add-on image. The Dockerfile names its own base images (build.yaml is retired).
#
# Architectures: the Supervisor builds this file on the device itself, so each architecture
# (amd64, aarch64) is built natively; CI can build both with
#   docker buildx build --platform linux/amd64,linux/arm64 .
# where the non-native one runs under QEMU emulation. No stage cross-compiles: every stage runs on
# the target platform (TARGETARCH selects the InfluxDB download). Untested here (no Docker engine
# on the development machine); linted with hadolint by addon/check.
#
# Frontend stage: the ingress panel (frontend/, React + Vite) built with the committed lock file;
# its dist/ is installed as /usr/share/homeiq/panel, where http.panel_dir = auto finds it.

ARG INFLUXDB_VERSION=1.8.10

# ---- the web panel ----
# The panel is static files: the stage's libc does not matter for the image. The lock file is
# complete (every platform's optional @rollup/* and @esbuild/* package), so `npm ci` installs
# exactly what it names on any platform.
FROM node:20-bookworm-slim AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend ./
RUN npm run build

# ---- Rust build (musl, to match the Alpine-based HA base image; the `addon` profile: fat LTO) ----
FROM rust:1.95-alpine AS build
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --profile addon --locked --bin homeiq \
    && cp target/addon/homeiq /homeiq \
    && strip /homeiq

# ---- InfluxDB 1.8 for the sidecar, from InfluxData's release tarball ----
# amd64 uses the static (musl) build; arm64 has only the glibc build, which runs with gcompat.
# The download is verified twice: against InfluxData's release signature (.asc) with the signing
# key pinned by fingerprint, and against the SHA-256 pinned below for its architecture
# (`sha256sum -c`; a mismatch fails the build). `bash addon/pin-influxdb` downloads both tarballs,
# checks their signatures and writes the two pins; an empty pin leaves the signature as the only
# check and prints the tarball's SHA-256 in the build log.
FROM alpine:3.24 AS influxdb
ARG INFLUXDB_VERSION
ARG TARGETARCH
# InfluxData Package Signing Key (the key that signed the 1.8.x releases)
ARG INFLUXDATA_KEY=05CE15085FC09D18E99EFB22684A14CF2582E0C5
# SHA-256 of influxdb-${INFLUXDB_VERSION}-static_linux_amd64.tar.gz and
# influxdb-${INFLUXDB_VERSION}_linux_arm64.tar.gz (written by addon/pin-influxdb)
ARG INFLUXDB_SHA256_AMD64=
ARG INFLUXDB_SHA256_ARM64=
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
# hadolint ignore=DL3018
RUN apk add --no-cache curl gnupg tar \
    && case "${TARGETARCH:-amd64}" in \
         amd64) file="influxdb-${INFLUXDB_VERSION}-static_linux_amd64.tar.gz"; sha="${INFLUXDB_SHA256_AMD64}" ;; \
         arm64) file="influxdb-${INFLUXDB_VERSION}_linux_arm64.tar.gz"; sha="${INFLUXDB_SHA256_ARM64}" ;; \
         *) echo "unsupported architecture ${TARGETARCH}" >&2; exit 1 ;; \
       esac \
    && curl -fsSLo /tmp/influxdb.tar.gz "https://dl.influxdata.com/influxdb/releases/${file}" \
    && curl -fsSLo /tmp/influxdb.tar.gz.asc "https://dl.influxdata.com/influxdb/releases/${file}.asc" \
    && GNUPGHOME=$(mktemp -d) && export GNUPGHOME \
    && gpg --batch --keyserver hkps://keyserver.ubuntu.com --recv-keys "${INFLUXDATA_KEY}" \
    && gpg --batch --verify /tmp/influxdb.tar.gz.asc /tmp/influxdb.tar.gz \
    && if [ -n "${sha}" ]; then \
         echo "${sha}  /tmp/influxdb.tar.gz" | sha256sum -c -; \
       else \
         echo "warning: ${file} has no SHA-256 pin (run addon/pin-influxdb); signature checked only" >&2; \
         sha256sum /tmp/influxdb.tar.gz; \
       fi \
    && mkdir -p /out \
    && tar -xzf /tmp/influxdb.tar.gz -C /tmp \
    && find /tmp -type f -name influxd -perm -u+x -exec cp {} /out/influxd \; \
    && test -x /out/influxd

# ---- the add-on ----
FROM ghcr.io/home-assistant/base:3.24
ARG TARGETARCH
ARG BUILD_VERSION=0.1.0
# s6-overlay: give HomeIQ its 8 s flush on SIGTERM, then stop the sidecar (config.yaml timeout: 20)
ENV S6_SERVICES_GRACETIME=15000 \
    S6_KILL_GRACETIME=3000 \
    S6_CMD_WAIT_FOR_SERVICES_MAXTIME=0
# jq and curl: the run scripts (env.sh); gcompat: the glibc influxd on aarch64
# hadolint ignore=DL3018
RUN apk add --no-cache jq curl \
    && if [ "${TARGETARCH}" = "arm64" ]; then apk add --no-cache gcompat; fi
COPY --from=influxdb /out/influxd /usr/bin/influxd
COPY --from=build /homeiq /usr/bin/homeiq
COPY --from=frontend /src/frontend/dist /usr/share/homeiq/panel
COPY rootfs /
LABEL \
    io.hass.name="HomeIQ" \
    io.hass.description="Durable, gap-free history of everything in your home, written to InfluxDB" \
    io.hass.version="${BUILD_VERSION}" \
    io.hass.type="addon" \
    io.hass.arch="aarch64|amd64" \
    org.opencontainers.image.source="https://github.com/homeiq/homeiq" \
    org.opencontainers.image.licenses="Apache-2.0"
