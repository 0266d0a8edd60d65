# syntax=docker/dockerfile:1
# The Portcullis container image: the release binary (profile `dist` of Cargo.toml) on
# distroless/cc (glibc, libgcc, CA certificates, no shell, no package manager), running as the
# non-root user 65532.
#
#   docker build -t ghcr.io/portcullis-dev/portcullis:0.1.0 .
#
# The tag the Helm chart uses by default is its appVersion (charts/portcullis/Chart.yaml), which
# follows `version` in Cargo.toml. See docs/install.md for kind and k3d.

# Builder and runtime are both Debian 12, so the binary's glibc matches.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
# aws-lc-sys (rustls' crypto provider) compiles C code; cmake is its fallback build system.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The crate registry and the compiled artifacts stay in BuildKit caches between builds.
COPY Cargo.toml Cargo.lock ./
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo fetch --locked
COPY src ./src
# Cargo.toml declares the benches; cargo needs their files to read the manifest.
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked --bin portcullis \
 && install -D -m 0755 target/dist/portcullis /out/portcullis

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/portcullis /usr/local/bin/portcullis
# The listeners (docs/configuration.md): http, https, ssh, admin. All above 1024: no capability
# is needed to bind them.
EXPOSE 8080 8443 2222 9090
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["run"]
