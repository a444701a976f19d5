# skiff: a static binary on a distroless base (no shell, no package manager).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/skiff ./cmd/skiff

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/skiff /usr/bin/skiff
# The DaemonSet runs it as root (it reads /var/log/pods and writes data_dir on the host); the
# image default is the distroless non-root user for anything else.
ENTRYPOINT ["/usr/bin/skiff"]
CMD ["run", "--config", "/etc/skiff/skiff.yaml"]
