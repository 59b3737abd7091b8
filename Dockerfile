# syntax=docker/dockerfile:1
# The liveupdates image: one static binary, every role a subcommand
# (liveupdates api | relay | poller | dlq | status ...).
#
#   docker build -t ghcr.io/nostressplanner/liveupdates:latest .
#
# deploy/dockerfile_test.go checks this file against go.mod, the binary's
# defaults and the manifests (user, port, entrypoint).

# Build: the Go version of go.mod; CGO off so the binary needs no libc.
FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/liveupdates ./cmd/liveupdates

# Run: distroless static has CA certificates (for Pusher over HTTPS),
# tzdata and /etc/passwd with the nonroot user, and nothing else: no shell,
# no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/liveupdates /usr/local/bin/liveupdates
# 65532 is distroless's nonroot; the manifests' runAsUser says the same.
USER 65532:65532
# LIVE_HTTP_ADDR's default: /healthz, /readyz, /metrics and the role's routes.
EXPOSE 8080
LABEL org.opencontainers.image.source="https://github.com/nostressplanner/liveupdates" \
      org.opencontainers.image.title="liveupdates" \
      org.opencontainers.image.description="NATS JetStream to Pusher relay, ingest API and poller"
ENTRYPOINT ["/usr/local/bin/liveupdates"]
CMD ["--help"]
