#!/usr/bin/env bash
# Builds, starts and stops a real kube-apiserver (with its etcd) for skiff's tests.
#
#   scripts/kube.sh build                    build both binaries (once per version) into the cache
#   scripts/kube.sh start DIR                start etcd + kube-apiserver on 127.0.0.1 on free ports
#   scripts/kube.sh stop DIR                 stop both, by their PIDs
#   scripts/kube.sh stop-apiserver DIR       stop only the apiserver (etcd keeps the data)
#   scripts/kube.sh start-apiserver DIR      start the apiserver again on the same port and etcd
#   scripts/kube.sh restart-apiserver DIR    both of the above
#
# start writes DIR/url (https://127.0.0.1:PORT), DIR/token (an admin bearer token: user admin,
# group system:masters), DIR/ca.crt (the CA of the serving certificate), DIR/kubeconfig (admin),
# DIR/etcd.pid and DIR/apiserver.pid, and prints the URL. No controller-manager, scheduler or
# kubelet runs: create each namespace's "default" ServiceAccount yourself, delete pods with grace
# period 0, and use unique namespace names (namespaces never finish terminating).
#
# start also reads two optional environment variables, for tests that need more than the defaults:
#   KUBE_APISERVER_EXTRA_ARGS  extra kube-apiserver flags, one per line (a value may hold spaces),
#                              e.g. "--audit-policy-file=/path". Saved as DIR/apiserver.args, so
#                              start-apiserver and restart-apiserver keep them.
#   KUBE_EXTRA_TOKENS          extra lines of the static token file, one user per line:
#                              token,user,uid,"group1,group2" (--token-auth-file format).
#
# The binaries are built from the Go module proxy (no git clone) and cached, keyed by version,
# under $SKIFF_CACHE (default /var/cache/skiff as root, else ~/.cache/skiff), outside the checkout:
# $SKIFF_CACHE/kube-$KUBE_VERSION/{kube-apiserver,etcd}. A cold build takes minutes and a few GB of
# Go build cache; once the binaries exist, build is a no-op.
set -euo pipefail

DEFAULT_ETCD_VERSION=v3.7.3
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-$DEFAULT_ETCD_VERSION}
if [ -z "${SKIFF_CACHE:-}" ]; then
	if [ "$(id -u)" = 0 ]; then SKIFF_CACHE=/var/cache/skiff; else SKIFF_CACHE=$HOME/.cache/skiff; fi
fi
# A non-default etcd version is part of the key too, so changing either version rebuilds.
BIN_DIR="$SKIFF_CACHE/kube-$KUBE_VERSION"
[ "$ETCD_VERSION" = "$DEFAULT_ETCD_VERSION" ] || BIN_DIR="$BIN_DIR-etcd-$ETCD_VERSION"
APISERVER=$BIN_DIR/kube-apiserver
ETCD=$BIN_DIR/etcd

log() { echo "kube.sh: $*" >&2; }

# staging_version: the k8s.io/* staging modules are published as v0.MINOR.PATCH for v1.MINOR.PATCH.
staging_version() { echo "v0.${KUBE_VERSION#v1.}"; }

# build_apiserver OUT: a throwaway wrapper module requiring k8s.io/kubernetes, with the staging
# modules that its go.mod lists at v0.0.0 (replaced by ./staging/... upstream) replaced by their
# published versions; `go install` refuses k8s.io/kubernetes itself because of those replaces.
build_apiserver() {
	local out=$1 wrap gomod mods m
	wrap=$(mktemp -d "${TMPDIR:-/tmp}/skiff-kube-build.XXXXXX")
	gomod=$(cd "$wrap" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	[ -f "$gomod" ] || { log "no go.mod for k8s.io/kubernetes@$KUBE_VERSION"; rm -rf "$wrap"; return 1; }
	mods=$(sed -n 's/^[[:space:]]*\(k8s\.io\/[^[:space:]]*\) v0\.0\.0$/\1/p' "$gomod" | sort -u)
	[ -n "$mods" ] || { log "no v0.0.0 staging modules in $gomod"; rm -rf "$wrap"; return 1; }
	(
		cd "$wrap"
		go mod init skiff.invalid/kube-apiserver-build >/dev/null 2>&1
		local args=(-require="k8s.io/kubernetes@$KUBE_VERSION")
		for m in $mods; do args+=(-replace="$m@v0.0.0=$m@$(staging_version)"); done
		go mod edit "${args[@]}"
		log "building kube-apiserver $KUBE_VERSION ($(echo "$mods" | wc -l) staging modules at $(staging_version))"
		GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
			-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION" \
			-o "$out" k8s.io/kubernetes/cmd/kube-apiserver
	) || { rm -rf "$wrap"; return 1; }
	rm -rf "$wrap"
}

# build_etcd OUT: the module's root package is etcd's main (server/main.go upstream).
build_etcd() {
	local out=$1 wrap
	wrap=$(mktemp -d "${TMPDIR:-/tmp}/skiff-etcd-build.XXXXXX")
	(
		cd "$wrap"
		go mod init skiff.invalid/etcd-build >/dev/null 2>&1
		go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
		log "building etcd $ETCD_VERSION"
		GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out" go.etcd.io/etcd/server/v3
	) || { rm -rf "$wrap"; return 1; }
	rm -rf "$wrap"
}

build() {
	if [ -x "$APISERVER" ] && [ -x "$ETCD" ]; then return 0; fi
	mkdir -p "$BIN_DIR"
	# One builder at a time (test.sh and a test binary may both ask); the others wait, then find
	# the binaries present.
	exec 9>"$BIN_DIR/.lock"
	flock 9
	if [ ! -x "$ETCD" ]; then
		build_etcd "$ETCD.tmp" && mv "$ETCD.tmp" "$ETCD"
	fi
	if [ ! -x "$APISERVER" ]; then
		build_apiserver "$APISERVER.tmp" && mv "$APISERVER.tmp" "$APISERVER"
	fi
	flock -u 9
	exec 9>&-
}

# free_ports N: N distinct free TCP ports on 127.0.0.1, one per line (all held open while chosen).
free_ports() {
	python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# certs DIR: a CA, a serving certificate for 127.0.0.1/localhost signed by it, the service-account
# signing key pair, and the admin token file.
certs() {
	local dir=$1
	command -v openssl >/dev/null || { log "openssl is needed"; return 1; }
	(
		cd "$dir"
		umask 077
		openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj /CN=skiff-test-ca \
			-keyout ca.key -out ca.crt 2>/dev/null
		openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
			-keyout apiserver.key -out apiserver.csr 2>/dev/null
		printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc' \
			'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' >apiserver.ext
		openssl x509 -req -sha256 -days 3650 -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
			-extfile apiserver.ext -out apiserver.crt 2>/dev/null
		openssl genrsa -out sa.key 2048 2>/dev/null
		openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
		openssl rand -hex 32 >token
		printf '%s,admin,admin,"system:masters"\n' "$(cat token)" >tokens.csv
		if [ -n "${KUBE_EXTRA_TOKENS:-}" ]; then printf '%s\n' "$KUBE_EXTRA_TOKENS" >>tokens.csv; fi
		chmod 644 ca.crt token
	)
}

# alive PIDFILE: whether the process recorded in PIDFILE runs.
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# kill_pidfile PIDFILE: SIGTERM, then SIGKILL after 30s; removes the file.
kill_pidfile() {
	local f=$1 pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 150); do
		kill -0 "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
		sleep 0.2
	done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$f"
}

start_etcd() {
	local dir=$1
	# shellcheck disable=SC1091
	. "$dir/ports"
	"$ETCD" --name skiff --data-dir "$dir/etcd" --unsafe-no-fsync --log-level warn \
		--listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
		--advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "skiff=http://127.0.0.1:$ETCD_PEER_PORT" \
		</dev/null >>"$dir/etcd.log" 2>&1 &
	echo $! >"$dir/etcd.pid"
	for _ in $(seq 1 300); do
		if curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"'; then
			return 0
		fi
		alive "$dir/etcd.pid" || break
		sleep 0.1
	done
	log "etcd did not become healthy; log tail:"
	tail -n 30 "$dir/etcd.log" >&2 || true
	return 1
}

start_apiserver() {
	local dir=${1:?usage: start-apiserver DIR}
	dir=$(cd "$dir" && pwd)
	alive "$dir/apiserver.pid" && { cat "$dir/url"; return 0; }
	alive "$dir/etcd.pid" || { log "etcd of $dir does not run"; return 1; }
	# shellcheck disable=SC1091
	. "$dir/ports"
	local extra=()
	if [ -f "$dir/apiserver.args" ]; then mapfile -t extra <"$dir/apiserver.args"; fi
	"$APISERVER" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
		--tls-cert-file="$dir/apiserver.crt" --tls-private-key-file="$dir/apiserver.key" \
		--cert-dir="$dir/apiserver-certs" \
		--etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
		--token-auth-file="$dir/tokens.csv" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$dir/sa.pub" \
		--service-account-signing-key-file="$dir/sa.key" \
		--authorization-mode=RBAC \
		--endpoint-reconciler-type=none \
		--service-cluster-ip-range=10.96.0.0/16 \
		--profiling=false \
		${extra[@]+"${extra[@]}"} \
		</dev/null >>"$dir/apiserver.log" 2>&1 &
	echo $! >"$dir/apiserver.pid"
	local url token
	url=$(cat "$dir/url")
	token=$(cat "$dir/token")
	for _ in $(seq 1 1200); do
		if [ "$(curl -sS --max-time 2 --cacert "$dir/ca.crt" -H "Authorization: Bearer $token" "$url/readyz" 2>/dev/null)" = ok ]; then
			echo "$url"
			return 0
		fi
		alive "$dir/apiserver.pid" || break
		sleep 0.1
	done
	log "kube-apiserver not ready after 120s; log tail:"
	tail -n 40 "$dir/apiserver.log" >&2 || true
	return 1
}

stop_apiserver() {
	local dir=${1:?usage: stop-apiserver DIR}
	kill_pidfile "$dir/apiserver.pid"
}

kubeconfig() {
	local dir=$1
	cat >"$dir/kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: skiff-test
  cluster:
    server: $(cat "$dir/url")
    certificate-authority-data: $(base64 -w0 <"$dir/ca.crt")
users:
- name: admin
  user:
    token: $(cat "$dir/token")
contexts:
- name: skiff-test
  context:
    cluster: skiff-test
    user: admin
current-context: skiff-test
YAML
}

# watchdog DIR PID: stops the instance once process PID exits, so a test binary killed by its
# timeout leaves nothing running. A no-op once stop removed the PID files.
watchdog() {
	local dir=$1 owner=$2
	(
		while kill -0 "$owner" 2>/dev/null; do sleep 2; done
		stop "$dir"
	) </dev/null >/dev/null 2>&1 &
}

start() {
	local dir=${1:?usage: start DIR}
	build
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if alive "$dir/etcd.pid" || alive "$dir/apiserver.pid"; then
		log "$dir already has a running instance; stop it first"
		return 1
	fi
	certs "$dir"
	# Blank lines are dropped: each remaining line is one argument.
	printf '%s\n' "${KUBE_APISERVER_EXTRA_ARGS:-}" | sed '/^[[:space:]]*$/d' >"$dir/apiserver.args"
	free_ports 3 | paste -d= <(printf '%s\n' ETCD_CLIENT_PORT ETCD_PEER_PORT APISERVER_PORT) - >"$dir/ports"
	# shellcheck disable=SC1091
	. "$dir/ports"
	echo "https://127.0.0.1:$APISERVER_PORT" >"$dir/url"
	kubeconfig "$dir"
	[ -z "${SKIFF_KUBE_OWNER:-}" ] || watchdog "$dir" "$SKIFF_KUBE_OWNER"
	start_etcd "$dir" || { stop "$dir"; return 1; }
	start_apiserver "$dir" || { stop "$dir"; return 1; }
}

stop() {
	local dir=${1:?usage: stop DIR}
	kill_pidfile "$dir/apiserver.pid"
	kill_pidfile "$dir/etcd.pid"
}

case "${1:-}" in
build) build ;;
start) start "${2:-}" ;;
stop) stop "${2:-}" ;;
stop-apiserver) stop_apiserver "${2:-}" ;;
start-apiserver) start_apiserver "${2:-}" ;;
restart-apiserver) stop_apiserver "${2:-}" && start_apiserver "${2:-}" ;;
*) echo "usage: $0 build|start DIR|stop DIR|stop-apiserver DIR|start-apiserver DIR|restart-apiserver DIR" >&2; exit 2 ;;
esac
