# syntax=docker/dockerfile:1
# Container images of Postern's two binaries, from one build stage:
#   docker build --target controller -t postern/controller:0.1.0 .
#   docker build --target gateway    -t postern/gateway:0.1.0 .
# Runtime: distroless (glibc, CA certificates, no shell, no package manager), running as
# the numeric non-root user 65532. The binaries are stripped (`install -s`) and link only
# glibc and libgcc (checked in CI by .ci/image).
# Without a Docker engine or registry access (CI, tests/support/k8s/images.sh), the same
# runtime stages are built with podman from binaries built on a Debian 12 host, the stage
# `build` replaced by a directory holding out/postern and out/postern-gateway:
#   podman build --build-context build=DIR --build-arg RUNTIME_IMAGE=<distroless stand-in> \
#     --target gateway -t localhost/postern/gateway:dev -f Dockerfile <empty dir>

# Builder and runtime share the Debian release (bookworm = Debian 12) so the binaries
# find the glibc they were linked against.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# make: the gateway's allocator (jemalloc, tikv-jemalloc-sys) is built from C source with
# make; the slim image has gcc but no make.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole workspace: cargo resolves every member, even the ones it does not build.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p postern-controller -p postern-gateway \
        --bin postern --bin postern-gateway \
    && install -D -s -m 0755 target/release/postern /out/postern \
    && install -D -s -m 0755 target/release/postern-gateway /out/postern-gateway

FROM ${RUNTIME_IMAGE} AS controller
COPY --from=build /out/postern /usr/local/bin/postern
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/postern"]
CMD ["controller"]

FROM ${RUNTIME_IMAGE} AS gateway
COPY --from=build /out/postern-gateway /usr/local/bin/postern-gateway
USER 65532:65532
EXPOSE 25 465 587 9090
ENTRYPOINT ["/usr/local/bin/postern-gateway"]
