# syntax=docker/dockerfile:1
# The registration engine's server image.
#
#   docker build --build-arg REGENGINE_COMMIT=$(git rev-parse --short=12 HEAD) -t regengine .
#   docker run -p 8080:8080 -v regengine-data:/var/lib/regengine regengine
# (the admin listener, 9090, is for Prometheus on the internal network: its metrics name
# events, so do not publish it)
#
# The build stage runs the same locked release build CI runs (`bash .ci/image-check` reads this
# file: it runs the build command, starts the binary with this image's environment and waits
# for the HEALTHCHECK command to pass). The runtime is Debian slim with CA certificates (payment
# and mail providers are reached over TLS), as a non-root user with the data on a volume.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# No .git in the context (.dockerignore): the commit comes in as a build argument.
ARG REGENGINE_COMMIT=unknown
ENV REGENGINE_COMMIT=${REGENGINE_COMMIT}
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gateway \
    && install -m 0755 target/release/gateway /usr/local/bin/gateway

FROM debian:${DEBIAN_RELEASE}-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 regengine \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/regengine regengine \
    && install -d -o regengine -g regengine -m 0700 /var/lib/regengine
COPY --from=build /usr/local/bin/gateway /usr/local/bin/gateway
USER 10001:10001
WORKDIR /var/lib/regengine
# The defaults are built in (config/default.toml); these make the server reachable in a
# container, put the data on the volume, and keep /metrics off the API port.
ENV REGENGINE__STORAGE__DATA_DIR=/var/lib/regengine \
    REGENGINE__HTTP__BIND=0.0.0.0:8080 \
    REGENGINE__HTTP__ADMIN_BIND=0.0.0.0:9090 \
    REGENGINE__LOG__FORMAT=json
VOLUME ["/var/lib/regengine"]
EXPOSE 8080 9090
# Ready once recovery finished; the binary asks itself (no HTTP client in the image).
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["gateway", "--probe-ready"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["gateway"]
