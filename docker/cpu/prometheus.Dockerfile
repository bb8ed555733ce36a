# Prometheus from Debian's package, on the same kind of base image as docker/cpu/vaani.Dockerfile
# (no registry needed). The scrape configuration (docker/prometheus.yml) is mounted by compose.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive
# curl: the compose healthcheck asks Prometheus's own /-/ready.
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus && chown prometheus:prometheus /prometheus

USER prometheus
WORKDIR /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", \
     "--web.listen-address=:9090"]
