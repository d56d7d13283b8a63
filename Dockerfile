# The teal sidecar image, for users with a registry: teal supervising HAProxy
# (Debian's 2.6) in one container.
#
#   docker build -t teal .
#   docker run -d -p 127.0.0.1:8080:80 -v /var/run/docker.sock:/var/run/docker.sock teal
#
# Without a registry, scripts/build-image.sh assembles the same image
# (teal:local) from the locally built binary and the host's HAProxy.
#
# teal is the container's main process: the container, and the HAProxy teal
# supervises in it, end when teal does (docs/operations.md, "When teal or
# HAProxy stops"). Its status port answers /healthz and /readyz.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin teal

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/teal /usr/bin/teal
# The status endpoint listens on every address of the container's own
# network namespace; it is reachable from outside only if published.
ENV TEAL_HAPROXY=/usr/sbin/haproxy \
    TEAL_STATUS_BIND=0.0.0.0:9180
EXPOSE 80 9180
WORKDIR /var/lib/teal
ENTRYPOINT ["/usr/bin/teal"]
CMD ["run"]
