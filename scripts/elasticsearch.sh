#!/usr/bin/env bash
# Obtains, starts and stops a real single-node Elasticsearch for skiff's end-to-end tests.
#
#   scripts/elasticsearch.sh fetch          download (once per version) into the cache
#   scripts/elasticsearch.sh start DIR      start on 127.0.0.1 on a free port; writes DIR/url and DIR/pid
#   scripts/elasticsearch.sh stop DIR       stop the instance started in DIR, by its PID
#
# The distribution comes from Maven Central as
# org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip and is cached, keyed
# by version, under $SKIFF_CACHE (default ~/.cache/skiff), outside the checkout. Elasticsearch
# refuses to run as root, so when we are root it runs as the unprivileged user "skiff-es".
set -euo pipefail

ES_VERSION=${ES_VERSION:-8.19.21}
# /var/cache when root: the unprivileged Elasticsearch user cannot traverse root's home.
if [ -z "${SKIFF_CACHE:-}" ]; then
	if [ "$(id -u)" = 0 ]; then SKIFF_CACHE=/var/cache/skiff; else SKIFF_CACHE=$HOME/.cache/skiff; fi
fi
CACHE=$SKIFF_CACHE
HOME_DIR="$CACHE/elasticsearch-$ES_VERSION"
ES_USER=skiff-es

# need CMD PACKAGE: installs a missing tool from Debian's packages when we may.
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "elasticsearch.sh: installing $2" >&2
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2") >&2
	else
		echo "elasticsearch.sh: $1 is needed (Debian package $2)" >&2
		return 1
	fi
}

fetch() {
	if [ -x "$HOME_DIR/bin/elasticsearch" ]; then return 0; fi
	need mvn maven
	need unzip unzip
	need java openjdk-17-jre-headless
	mkdir -p "$CACHE"
	local tmp
	tmp=$(mktemp -d "$CACHE/fetch.XXXXXX")
	echo "elasticsearch.sh: downloading Elasticsearch $ES_VERSION from Maven Central" >&2
	mvn -q -B dependency:copy \
		-Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
		-DoutputDirectory="$tmp" -Dmdep.useBaseVersion=true >&2
	(cd "$tmp" && unzip -q "elasticsearch-$ES_VERSION.zip")
	rm -rf "$HOME_DIR"
	mv "$tmp/elasticsearch-$ES_VERSION" "$HOME_DIR"
	rm -rf "$tmp"
}

free_port() {
	need python3 python3
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

as_user() {
	if [ "$(id -u)" = 0 ]; then
		id "$ES_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
		setpriv --reuid="$ES_USER" --regid="$ES_USER" --clear-groups "$@"
	else
		"$@"
	fi
}

start() {
	local dir=${1:?usage: start DIR}
	fetch
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	local port tport
	port=$(free_port)
	tport=$(free_port)
	mkdir -p "$dir/data" "$dir/logs" "$dir/config"
	cp -r "$HOME_DIR/config/." "$dir/config/"
	cat >"$dir/config/elasticsearch.yml" <<YML
cluster.name: skiff-e2e
node.name: skiff-e2e
discovery.type: single-node
network.host: 127.0.0.1
http.port: $port
transport.port: $tport
path.data: $dir/data
path.logs: $dir/logs
xpack.security.enabled: false
action.destructive_requires_name: false
cluster.routing.allocation.disk.threshold_enabled: false
YML
	printf -- '-Xms512m\n-Xmx512m\n' >"$dir/config/jvm.options.d/heap.options" 2>/dev/null ||
		{ mkdir -p "$dir/config/jvm.options.d"; printf -- '-Xms512m\n-Xmx512m\n' >"$dir/config/jvm.options.d/heap.options"; }
	if [ "$(id -u)" = 0 ]; then
		id "$ES_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
		chown -R "$ES_USER:$ES_USER" "$dir"
		# The user needs to traverse to DIR; /tmp paths usually allow it already.
		chmod o+rx "$HOME_DIR" 2>/dev/null || true
	fi
	local java_home=${ES_JAVA_HOME:-}
	if [ -z "$java_home" ]; then
		case "$ES_VERSION" in
		9.*) java_home=/usr/lib/jvm/temurin-25-jdk-amd64 ;;
		*) java_home=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")") ;;
		esac
	fi
	ES_PATH_CONF="$dir/config" ES_JAVA_HOME="$java_home" \
		as_user "$HOME_DIR/bin/elasticsearch" -d -p "$dir/pid" >"$dir/stdout" 2>&1 || {
		cat "$dir/stdout" >&2
		return 1
	}
	local url="http://127.0.0.1:$port"
	for _ in $(seq 1 180); do
		if curl -fsS "$url/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1; then
			echo "$url" >"$dir/url"
			echo "$url"
			return 0
		fi
		sleep 1
	done
	echo "elasticsearch.sh: not healthy after 180s; log tail:" >&2
	tail -n 50 "$dir/logs/skiff-e2e.log" >&2 || true
	stop "$dir"
	return 1
}

stop() {
	local dir=${1:?usage: stop DIR}
	[ -f "$dir/pid" ] || return 0
	local pid
	pid=$(cat "$dir/pid")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 60); do
		kill -0 "$pid" 2>/dev/null || { rm -f "$dir/pid"; return 0; }
		sleep 0.5
	done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$dir/pid"
}

case "${1:-}" in
fetch) fetch ;;
start) start "${2:-}" ;;
stop) stop "${2:-}" ;;
*) echo "usage: $0 fetch|start DIR|stop DIR" >&2; exit 2 ;;
esac
