#!/usr/bin/env bash
# skiff's whole test suite, as `make test` and CI run it: formatting and vet, unit tests with the
# race detector (fuzz seed corpora included), then the end-to-end tests of the built binary. A real
# Elasticsearch (scripts/elasticsearch.sh) and a real kube-apiserver with etcd (scripts/kube.sh;
# built once per version into a cache, ~10 min cold on 2 cores) are started once for the run and
# stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== gofmt, go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...

echo "== kube-apiserver and etcd: build (cached by version)"
scripts/kube.sh build

echo "== Elasticsearch"
es_dir=$(mktemp -d /tmp/skiff-test-es.XXXXXX)
chmod 755 "$es_dir"
kube_dir=$(mktemp -d /tmp/skiff-test-kube.XXXXXX)
cleanup() {
	scripts/kube.sh stop "$kube_dir" || true
	scripts/elasticsearch.sh stop "$es_dir" || true
	rm -rf "$es_dir" "$kube_dir"
}
trap cleanup EXIT
SKIFF_ES_URL=$(scripts/elasticsearch.sh start "$es_dir")
export SKIFF_ES_URL
echo "Elasticsearch at $SKIFF_ES_URL"

echo "== kube-apiserver"
# SKIFF_KUBE_OWNER: should this script die without its trap, a watchdog stops the instance.
SKIFF_KUBE_OWNER=$$ scripts/kube.sh start "$kube_dir" >/dev/null
export SKIFF_KUBE_DIR=$kube_dir
echo "kube-apiserver at $(cat "$kube_dir/url") (SKIFF_KUBE_DIR=$kube_dir)"

echo "== unit tests (-race)"
go test -race -count=1 -timeout 20m $(go list ./... | grep -v '/e2e')

echo "== end-to-end tests"
go test -count=1 -timeout 40m ./e2e/...
