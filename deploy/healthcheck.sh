#!/bin/bash
# The container's health check (Dockerfile HEALTHCHECK, deploy/compose.yaml): GET /api/v1/health
# on `hilo serve` with bash alone — no curl in the image. Exit 0 when it answers 200.
#   HILO_HEALTH_HOST  default 127.0.0.1
#   HILO_HEALTH_PORT  default 8080 (the port of [server] addr)
set -eu
host="${HILO_HEALTH_HOST:-127.0.0.1}"
port="${HILO_HEALTH_PORT:-8080}"
if ! exec 3<>"/dev/tcp/$host/$port"; then
  echo "hilo health: nothing listens on $host:$port" >&2
  exit 1
fi
printf 'GET /api/v1/health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
status=""
IFS= read -r -t 5 status <&3 || true
case "$status" in
  "HTTP/1.1 200"*) exit 0 ;;
  *) echo "hilo health: ${status:-no answer} from $host:$port" >&2; exit 1 ;;
esac
