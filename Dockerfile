# syntax=docker/dockerfile:1
# The direwolf image: one binary, /usr/local/bin/direwolf, its entrypoint; the manifests of
# `direwolf install` give the subcommand as args (proxy, operator; the operator runs the same
# image as each stream pod's agent). It runs as the distroless `nonroot` user, uid and gid 65532,
# the runAsUser of the manifests. Build from the repository root:
#   docker build -t ghcr.io/games-on-whales/direwolf:dev .
# then: direwolf install --image ghcr.io/games-on-whales/direwolf:dev | kubectl apply --server-side -f -

# Debian 12 (bookworm) on both sides: the binary links against the runtime's glibc.
FROM docker.io/library/rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p direwolf --bin direwolf \
    && install -D -m 0755 target/release/direwolf /out/direwolf

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/direwolf /usr/local/bin/direwolf
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/direwolf"]
