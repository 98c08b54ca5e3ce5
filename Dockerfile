# syntax=docker/dockerfile:1
# The sluice host with the example operators: `sluice` on PATH, the operators'
# .wasm modules in /opt/sluice/modules (on SLUICE_MODULE_PATH), the examples'
# specs in /opt/sluice/examples, and in /opt/sluice/compose the job, loader
# and submit script that docker-compose.yml runs. By default it serves the API and dashboard on
# port 8081, which needs a token (SLUICE_TOKEN). docker-compose.yml uses it.
#   docker build -t sluice .
#   docker run --rm -p 127.0.0.1:8081:8081 -e SLUICE_TOKEN=secret sluice
#   docker run --rm sluice run /opt/sluice/examples/orders/pipeline.yaml
# The build and runtime images share a Debian release (the binary links the
# build's glibc and libstdc++); change both together.
ARG RUST_IMAGE=rust:1.95-trixie
ARG RUNTIME_IMAGE=debian:trixie-slim

FROM ${RUST_IMAGE} AS build
# libclang for RocksDB's bindings, cmake for the bundled librdkafka (the same
# as scripts/setup.sh installs), and the target of the Wasm operators.
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang libclang-dev cmake \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add wasm32-wasip2
WORKDIR /src
ENV CARGO_TARGET_DIR=/src/target
COPY . .
# The registry and target folders are build caches, kept between builds; what
# the image needs is copied out of them to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    set -eu; \
    cargo build --release --locked -p sluice; \
    modules=$(bash scripts/build-guests.sh --quiet); \
    mkdir -p /out/modules; \
    cp target/release/sluice /out/sluice; \
    strip --strip-debug /out/sluice; \
    cp "$modules"/*.wasm /out/modules/

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/sluice sluice \
    && mkdir -p /var/lib/sluice/modules /var/lib/sluice/checkpoints \
    && chown -R sluice:sluice /var/lib/sluice
COPY --from=build /out/sluice /usr/local/bin/sluice
COPY --from=build /out/modules/ /opt/sluice/modules/
COPY examples/ /opt/sluice/examples/
COPY compose/ /opt/sluice/compose/
# Uploaded modules go to $SLUICE_HOME/modules; relative paths in submitted
# specs start in the working folder.
ENV SLUICE_HOME=/var/lib/sluice \
    SLUICE_MODULE_PATH=/opt/sluice/modules
USER 10001:10001
WORKDIR /var/lib/sluice
EXPOSE 8081
# sluice stops on Ctrl-C (SIGINT): `sluice serve` cancels its jobs, `sluice
# run` stops its job (a checkpointed job resumes when run again).
STOPSIGNAL SIGINT
ENTRYPOINT ["sluice"]
CMD ["serve", "--listen", "0.0.0.0:8081"]
