# syntax=docker/dockerfile:1
# hilo in a container: `docker build -t hilo .`, then see deploy/compose.yaml and
# docs/deployment.md. Build stage: the Rust image; runtime: Debian slim, non-root, one binary.

FROM rust:1-slim-bookworm AS build
# aws-lc-sys (TLS) builds with cmake; SQLite is bundled and built with the C compiler.
# Debian's stable packages are not pinned: the release's security updates are wanted.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake perl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# With the local embedding model (candle; the model files are mounted, see docs/memory.md).
RUN cargo build --release --locked --bin hilo --features hilo-cli/local-embeddings \
 && install -m 0755 target/release/hilo /usr/local/bin/hilo

FROM debian:bookworm-slim
# ca-certificates: TLS to model providers and HTTP tools.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 hilo \
 && useradd --system --uid 10001 --gid hilo --home-dir /var/lib/hilo --shell /usr/sbin/nologin hilo \
 && mkdir -p /var/lib/hilo /etc/hilo \
 && chown hilo:hilo /var/lib/hilo
COPY --from=build /usr/local/bin/hilo /usr/local/bin/hilo
COPY deploy/healthcheck.sh /usr/local/bin/hilo-healthcheck
COPY examples/ /usr/share/hilo/examples/

# The SQLite database, its step log and the master key file live here unless HILO_DB points
# at PostgreSQL; --db and HILO_CONFIG can point elsewhere.
ENV HILO_DB=/var/lib/hilo/hilo.db \
    HILO_HEALTH_PORT=8080 \
    XDG_DATA_HOME=/var/lib/hilo
VOLUME ["/var/lib/hilo"]
WORKDIR /var/lib/hilo
USER 10001:10001
EXPOSE 8080
# Health: GET /api/v1/health with bash's /dev/tcp (deploy/healthcheck.sh; no curl here).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/hilo-healthcheck"]
ENTRYPOINT ["/usr/local/bin/hilo"]
CMD ["serve", "--addr", "0.0.0.0:8080"]
