# kinesis-loader image: built from source on Debian 12, run as a non-root
# user with only the runtime libraries.
#
#   docker build -t kinesis-loader:0.1.0 .
#   docker run --rm -p 8080:8080 -e AWS_REGION=eu-west-1 kinesis-loader:0.1.0
#
# The entrypoint is the binary and the default command `serve`; pass
# `load STREAM ...` or `read STREAM ...` to run another command. Every
# setting is an environment variable (`docker run --rm kinesis-loader:0.1.0 --help`).

ARG DEBIAN_IMAGE=debian:12-slim

FROM ${DEBIAN_IMAGE} AS build
# The toolchain and the -dev packages CMakeLists.txt looks for with
# pkg-config (cmocka too: the test helpers are configured, though not built).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       build-essential cmake pkg-config \
       libmicrohttpd-dev libcurl4-openssl-dev libssl-dev libcjson-dev \
       libhiredis-dev libpq-dev libsqlite3-dev libcmocka-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release \
    && cmake --build /build --target kinesis-loader -j"$(nproc)" \
    && strip /build/kinesis-loader \
    && /build/kinesis-loader --version

FROM ${DEBIAN_IMAGE}
# Runtime libraries only, and the CA certificates for TLS to AWS and
# PostgreSQL. coreutils (already in the base image) provides the `sleep`
# of the Helm chart's preStop hook.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       ca-certificates libmicrohttpd12 libcurl4 libssl3 libcjson1 \
       libhiredis0.14 libpq5 libsqlite3-0 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 kinesis-loader \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin kinesis-loader \
    && install -d -o 10001 -g 10001 -m 0750 /data
COPY --from=build /build/kinesis-loader /usr/local/bin/kinesis-loader
# The SQLite default (./kinesis-loader.db) lands in /data, the one directory
# the user may write to; mount a volume there to keep it.
WORKDIR /data
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["kinesis-loader"]
CMD ["serve"]
