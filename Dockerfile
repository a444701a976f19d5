# skiff: a static binary on a distroless base (no shell, no package manager).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# The same command as `make build` (e2e/image checks that they agree and that the result is static).
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/skiff ./cmd/skiff

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/skiff /usr/bin/skiff
# uid 0, as the Helm chart runs it: kubelet log files are root-owned and not world-readable, and a
# non-root user could not hold CAP_DAC_READ_SEARCH under no_new_privs. The chart drops every
# capability and makes the root filesystem read-only; see charts/skiff/README.md ("Security").
USER 0:0
ENTRYPOINT ["/usr/bin/skiff"]
CMD ["run", "--config", "/etc/skiff/config/skiff.yaml"]
