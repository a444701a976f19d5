# skiff — see README.md. The two commands a new user needs: `make run` and `make test`.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
ES      ?=
FUZZTIME ?= 60s

.PHONY: build run test unit e2e kube bench bench-pipeline bench-kube fuzz reliability lint clean

build: ## bin/skiff, a static binary
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/skiff ./cmd/skiff

run: build ## ship generated sample logs to ./skiff-demo-out (and to Elasticsearch with ES=http://host:9200)
	./bin/skiff demo $(if $(ES),--es $(ES))

test: ## everything CI runs: gofmt, vet, unit tests with -race, e2e against a real Elasticsearch and kube-apiserver
	scripts/test.sh

kube: ## build kube-apiserver and etcd for the tests into the cache, once per version (scripts/kube.sh)
	scripts/kube.sh build

unit: ## unit tests only (tests that need Elasticsearch or a kube-apiserver start their own)
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e: ## end-to-end tests only (they start Elasticsearch and a kube-apiserver unless SKIFF_ES_URL, SKIFF_KUBE_DIR are set)
	$(GO) test -count=1 -v -timeout 40m ./e2e/...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

bench: ## Go benchmarks of each stage, then the whole pipeline into a blackhole _bulk endpoint
	$(GO) test -run '^$$' -bench . -benchmem ./parsers/... ./outputs/... ./agent/...
	$(MAKE) bench-pipeline

bench-pipeline: build ## whole pipeline over a generated ~1 GiB CRI file into a blackhole _bulk endpoint
	./bin/skiff bench --size 1GiB

bench-kube: build kube ## issue 6's memory case: 1,000 files at full speed with Kubernetes enrichment (500 pods on the node with 2 containers each, 200 namespaces) against a kube-apiserver of its own; prints peak RSS per run
	@dir=$$(mktemp -d "$${TMPDIR:-/tmp}/skiff-bench-kube.XXXXXX") || exit 1; \
	trap 'scripts/kube.sh stop "$$dir"; rm -rf "$$dir"' EXIT; trap 'exit 130' INT TERM; \
	SKIFF_KUBE_OWNER=$$$$ scripts/kube.sh start "$$dir" >/dev/null && \
	./bin/skiff bench --kube-dir "$$dir" --pods 500 --files 1000 --namespaces 200 --size 256MiB --runs 3

fuzz: ## run every fuzz target for FUZZTIME (default 60s) each, one after the other on one core (-parallel 1); a new input is minimized for at most 10s (the default 60s can eat a whole run)
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -parallel 1 $$pkg || exit 1; \
		done; \
	done

reliability: ## the reliability suite in full (SIGKILLs, 10 min outage, 429 storm, fast rotation, read-only block, RSS with ES down; ~30 min) against an Elasticsearch of its own; puts its table into docs/reliability.md
	@tab=$$(mktemp "$${TMPDIR:-/tmp}/skiff-reliability.XXXXXX") || exit 1; trap 'rm -f "$$tab"' EXIT; \
	SKIFF_RELIABILITY=full SKIFF_RELIABILITY_TABLE="$$tab" $(GO) test -count=1 -v -timeout 100m ./e2e/reliability/; rc=$$?; \
	if [ -s "$$tab" ]; then \
		awk -v f="$$tab" '/<!-- table:end -->/ {skip = 0} !skip {print} /<!-- table:begin -->/ {while ((getline l < f) > 0) print l; skip = 1}' \
			docs/reliability.md >docs/reliability.md.new && mv docs/reliability.md.new docs/reliability.md; \
	fi; exit $$rc

clean:
	rm -rf bin skiff-demo-out
