#!/bin/bash
# The container's health check (Dockerfile HEALTHCHECK, deploy/compose.yaml): GET /api/v1/health
# on `hilo serve` (or another path, e.g. a worker's /ready) with bash alone — no curl in the
# image. Exit 0 when it answers 200.
#   HILO_HEALTH_HOST  default 127.0.0.1
#   HILO_HEALTH_PORT  default 8080 (the port of [server] addr; a worker's --metrics-addr port)
#   HILO_HEALTH_PATH  default /api/v1/health (a worker: /ready)
set -eu
host="${HILO_HEALTH_HOST:-127.0.0.1}"
port="${HILO_HEALTH_PORT:-8080}"
path="${HILO_HEALTH_PATH:-/api/v1/health}"
if ! exec 3<>"/dev/tcp/$host/$port"; then
  echo "hilo health: nothing listens on $host:$port" >&2
  exit 1
fi
printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" >&3
status=""
IFS= read -r -t 5 status <&3 || true
case "$status" in
  "HTTP/1.1 200"*) exit 0 ;;
  *) echo "hilo health: ${status:-no answer} from $host:$port$path" >&2; exit 1 ;;
esac
