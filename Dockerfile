# syntax=docker/dockerfile:1.7
#
# One image for every role of the `douyin` binary; the role is chosen by args:
#   docker run IMAGE serve all            # everything in one process (default)
#   docker run IMAGE serve user           # one role, as the Helm chart runs it
#   docker run IMAGE migrate              # run database migrations and exit
#
# Targets:
#   dev                            toolchain + cargo-watch, rebuilds in the pod (tilt --live)
#   runtime (default, last stage)  Debian slim + ffmpeg, so uploads get first-frame covers
#                                  (every runtime also ships `douyin-bench`, which the
#                                  chart's optional load generator runs)
#   runtime-distroless             distroless/cc, no shell and no ffmpeg: smaller, and
#                                  covers fall back to the default image
#   operator-runtime               the `douyin-operator` binary on distroless/cc
#                                  (k8s/operator, helm/douyin-operator)
# All run as the non-root user 65532 and need no writable root filesystem: the data
# dir is /data (an emptyDir in Kubernetes) and temporary files go to /tmp.
#
# Both binaries share the toolchain and the dependency recipe; each cooks only its
# own dependencies and copies only the sources it compiles, so a change under
# operator/ does not rebuild the app image and a change under services/ leaves the
# operator's compiled layer cached. The other workspace members need only their
# Cargo.toml: their sources stay cargo-chef's stubs. Every cargo step is --locked.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm
ARG CARGO_CHEF_VERSION=0.1.78

# ---- toolchain + cargo-chef -------------------------------------------------------
FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
ARG CARGO_CHEF_VERSION
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake pkg-config perl make g++ \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

# ---- dependency recipe (changes only when manifests or the lockfile change) ---------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---- build: dependencies first (cached layer), then the workspace -------------------
FROM chef AS builder
ENV CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0
COPY --from=planner /src/recipe.json recipe.json
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo chef cook --release --locked -p douyin --recipe-path recipe.json
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY services services
COPY operator/Cargo.toml operator/
COPY bench/Cargo.toml bench/
# The commit douyin_build_info names (the build context has no .git):
# docker build --build-arg DOUYIN_BUILD_COMMIT=$(git rev-parse --short=12 HEAD) .
ARG DOUYIN_BUILD_COMMIT=unknown
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    DOUYIN_BUILD_COMMIT="${DOUYIN_BUILD_COMMIT}" cargo build --release --locked -p douyin \
    && install -D -m 0755 target/release/douyin /out/usr/local/bin/douyin \
    && strip /out/usr/local/bin/douyin \
    && install -d -m 0750 /out/data

# ---- douyin-bench (the chart's load generator) on top of the app's build -----------
# Its own stage, so an edit under bench/ rebuilds only this and never the app binary.
FROM builder AS bench-builder
COPY bench bench
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo build --release --locked -p douyin-bench \
    && install -D -m 0755 target/release/douyin-bench /out-bench/usr/local/bin/douyin-bench \
    && strip /out-bench/usr/local/bin/douyin-bench

# ---- the operator's build: its own dependencies, then operator/ --------------------
FROM chef AS operator-builder
ENV CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0
COPY --from=planner /src/recipe.json recipe.json
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo chef cook --release --locked -p douyin-operator --recipe-path recipe.json
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY services services
COPY bench/Cargo.toml bench/
COPY operator operator
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo build --release --locked -p douyin-operator --bin douyin-operator \
    && install -D -m 0755 target/release/douyin-operator /out/usr/local/bin/douyin-operator \
    && strip /out/usr/local/bin/douyin-operator

# ---- dev: compiles and reruns the binary inside the pod when sources change ----------
# Used by `tilt up -- --live` (Tiltfile): Tilt syncs proto/ and services/ into /src and
# cargo-watch rebuilds and restarts `douyin ARGS…`. Needs a writable root filesystem.
# The toolchain under /usr/local stays root's and read-only; the user 65532 owns only
# what it writes: /src (sources and target/), its CARGO_HOME (registry) and /data.
# Those are created with their owner, so no layer re-copies the toolchain.
FROM chef AS dev
ARG CARGO_WATCH_VERSION=8.5.3
RUN cargo install cargo-watch --locked --version "${CARGO_WATCH_VERSION}" \
    && apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && printf '%s\n' '#!/bin/sh' \
      'exec cargo watch --why -w proto -w services -w Cargo.toml -x "run --locked -p douyin -- $*"' \
      > /usr/local/bin/douyin-dev \
    && chmod 0755 /usr/local/bin/douyin-dev \
    && install -d -o 65532 -g 65532 /data /home/douyin /home/douyin/.cargo \
    && chown 65532:65532 /src
ENV CARGO_HOME=/home/douyin/.cargo HOME=/home/douyin \
    DOUYIN_DATA_DIR=/data DOUYIN_LOG_FORMAT=pretty CARGO_TERM_COLOR=never
USER 65532:65532
COPY --chown=65532:65532 --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --locked -p douyin --recipe-path recipe.json
COPY --chown=65532:65532 . .
EXPOSE 8080 50051 9090
ENTRYPOINT ["/usr/local/bin/douyin-dev"]
CMD ["serve", "all"]

# ---- the operator's runtime ---------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS operator-runtime
COPY --from=operator-builder /out/usr/local/bin/douyin-operator /usr/local/bin/douyin-operator
ENV DOUYIN_OPERATOR_LOG_FORMAT=json
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/douyin-operator"]

# ---- runtime without ffmpeg ---------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime-distroless
COPY --from=builder /out/usr/local/bin/douyin /usr/local/bin/douyin
COPY --from=bench-builder /out-bench/usr/local/bin/douyin-bench /usr/local/bin/douyin-bench
COPY --from=builder --chown=65532:65532 /out/data /data
ENV DOUYIN_DATA_DIR=/data \
    DOUYIN_LOG_FORMAT=json
USER 65532:65532
WORKDIR /data
EXPOSE 8080 50051 9090
ENTRYPOINT ["/usr/local/bin/douyin"]
CMD ["serve", "all"]

# ---- runtime with ffmpeg (default) --------------------------------------------------
FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 nonroot \
    && useradd --system --uid 65532 --gid 65532 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin nonroot
COPY --from=builder /out/usr/local/bin/douyin /usr/local/bin/douyin
COPY --from=bench-builder /out-bench/usr/local/bin/douyin-bench /usr/local/bin/douyin-bench
COPY --from=builder --chown=65532:65532 /out/data /data
ENV DOUYIN_DATA_DIR=/data \
    DOUYIN_LOG_FORMAT=json \
    DOUYIN_FFMPEG_PATH=/usr/bin/ffmpeg
USER 65532:65532
WORKDIR /data
EXPOSE 8080 50051 9090
ENTRYPOINT ["/usr/local/bin/douyin"]
CMD ["serve", "all"]
