# lameduck's image: one static binary on an empty base, running as a numeric
# non-root user (k8s/deployment.yaml's runAsUser/runAsGroup 65532).
#
# Two ways to build it:
#
#   docker build -t lameduck:dev .
#       The default (last) stage, `release`: compiles in golang:1.27.3, so it
#       needs a registry to pull that image from.
#
#   make image    (or, after building bin/lameduck yourself for linux:
#   docker build --target prebuilt -t lameduck:dev .)
#       The `prebuilt` stage copies a binary built on the host: nothing is
#       pulled, so it works with no registry at all. It comes first in this
#       file because Docker's legacy builder (no BuildKit/buildx) builds every
#       stage up to the target; BuildKit skips unused stages anyway.

# --- prebuilt: a host-built binary (CGO_ENABLED=0 GOOS=linux) --------------
FROM scratch AS prebuilt
ARG BINARY=bin/lameduck
ARG VERSION=dev
LABEL org.opencontainers.image.title="lameduck" \
      org.opencontainers.image.version="${VERSION}"
COPY ${BINARY} /lameduck
USER 65532:65532
EXPOSE 8080 8086
ENTRYPOINT ["/lameduck"]

# --- builder: compile from source --------------------------------------------
FROM golang:1.27.3 AS builder
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/lameduck .

# --- release (default): the binary from builder ------------------------------
FROM scratch AS release
ARG VERSION=dev
LABEL org.opencontainers.image.title="lameduck" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /out/lameduck /lameduck
USER 65532:65532
EXPOSE 8080 8086
ENTRYPOINT ["/lameduck"]
