# lameduck: `make run` starts the service, `make test` runs every test.
SHELL := /bin/bash
GO ?= go
# The Go release every target builds and tests with: the go command fetches it from the module proxy on first use
# (about 70 MB), whatever Go runs make. 1.27.3 is the oldest release our machines can fetch with no known
# vulnerability in the standard library (make vuln). GOTOOLCHAIN=local make ... uses the installed Go instead.
export GOTOOLCHAIN ?= go1.27.3
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: run test lint build help

## run: build and start lameduck locally with its defaults (app :8080, admin :8086), logging text
run: build
	exec env LAMEDUCK_LOG_FORMAT="$${LAMEDUCK_LOG_FORMAT:-text}" bin/lameduck

## help: list the targets, one line each (from the "## target: what it does" comments)
HELP_VARS := IMAGE NATS_IMAGE KIND_CLUSTER VULNDB VULNDB_VERSION FUZZTIME
help:
	@$(foreach v,$(HELP_VARS),$(v)='$($(v))') awk ' \
	  function show() { out = ""; rest = d; \
	    while (match(rest, /\$$\([A-Z_]+\)/)) { name = substr(rest, RSTART + 2, RLENGTH - 3); \
	      out = out substr(rest, 1, RSTART - 1) (name in ENVIRON ? ENVIRON[name] : substr(rest, RSTART, RLENGTH)); \
	      rest = substr(rest, RSTART + RLENGTH) } \
	    printf "  %-10s %s%s%s\n", t, out, rest, more; t = "" } \
	  /^## [a-z][a-z0-9-]*: / { if (t != "") show(); t = $$2; sub(/:$$/, "", t); d = $$0; sub(/^## [^:]*: /, "", d); more = ""; next } \
	  /^##   / { if (t != "") more = " …"; next } \
	  { if (t != "") show() } \
	  END { if (t != "") show() }' $(firstword $(MAKEFILE_LIST))

# Two modules: the service's (this directory: what the binary and its unit tests need) and the tooling's (e2e/:
# the kind e2e, the load generator, the rehearsal, the benchmarks, the manifest checks and the lint tools).
TOOLING := e2e

## test: every test of both modules, with the race detector (no cluster needed)
test:
	$(GO) test -race -count=1 -timeout 20m ./...
	cd $(TOOLING) && $(GO) test -race -count=1 -timeout 20m ./...

## lint: gofmt, go vet, staticcheck and govulncheck on both modules (-tags e2e covers the kind tests too);
##   the tools are pinned in e2e/go.mod; govulncheck reads a database built offline (the first run builds it, ~4 min)
lint: vulndb bin/staticcheck bin/govulncheck
	@unformatted=$$("$$($(GO) env GOROOT)/bin/gofmt" -l $$(git ls-files '*.go')) || exit 1; \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	cd $(TOOLING) && $(GO) vet -tags e2e ./...
	bin/staticcheck ./...
	cd $(TOOLING) && ../bin/staticcheck -tags e2e ./...
	bin/govulncheck -db file://$(CURDIR)/$(VULNDB) ./...
	cd $(TOOLING) && ../bin/govulncheck -db file://$(CURDIR)/$(VULNDB) ./...

# The lint tools, built from the versions e2e/go.mod pins (rebuilt when it changes).
bin/staticcheck bin/govulncheck: $(TOOLING)/go.mod
	cd $(TOOLING) && $(GO) build -o ../bin/staticcheck honnef.co/go/tools/cmd/staticcheck
	cd $(TOOLING) && $(GO) build -o ../bin/govulncheck golang.org/x/vuln/cmd/govulncheck

# --- fuzzing and known vulnerabilities -----------------------------------------------
FUZZTIME ?= 30s
FUZZ_TARGETS := internal/config:FuzzLoad internal/idempotency:FuzzStore internal/server:FuzzHelloQuery \
  internal/server:FuzzIdempotencyKey
.PHONY: fuzz vuln vulndb

## fuzz: each native fuzz test for FUZZTIME (default 30s; make test runs their seed corpora, in code and in
##   testdata/fuzz); a failing input lands in that package's testdata/fuzz: commit it with the fix
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== $${t%%:*} $${t##*:} for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$${t##*:}$$" -fuzztime $(FUZZTIME) ./$${t%%:*}/; \
	done

# govulncheck reads the Go vulnerability database, normally from vuln.go.dev, which our machines cannot
# reach. The same data ships as the Go module golang.org/x/vulndb (data/osv), with the tool that builds the
# database from it (cmd/gendb, which wants a git checkout): make vulndb builds it into $(VULNDB), offline.
# Bump VULNDB_VERSION (a pseudo-version of golang.org/x/vulndb) for newer data.
VULNDB_VERSION ?= v0.0.0-20261105234957-e22db6528018
VULNDB ?= bin/vulndb

## vulndb: the Go vulnerability database in $(VULNDB), built from golang.org/x/vulndb@$(VULNDB_VERSION) (~4 min)
vulndb: $(VULNDB)/index/db.json
$(VULNDB)/index/db.json:
	@set -e; src=$$(cd $(TOOLING) && $(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	  tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cp -r "$$src" "$$tmp/vulndb"; chmod -R u+w "$$tmp/vulndb"; \
	  cd "$$tmp/vulndb" && git init -q && git add -A && \
	  git -c user.name=vulndb -c user.email=vulndb@localhost commit -qm "golang.org/x/vulndb@$(VULNDB_VERSION)" && \
	  rm -rf "$(CURDIR)/$(VULNDB)" && GOFLAGS=-mod=mod $(GO) run ./cmd/gendb -repo . -out "$(CURDIR)/$(VULNDB)"

## vuln: govulncheck (pinned in e2e/go.mod) on both modules, against $(VULNDB) (make lint runs it too)
vuln: vulndb bin/govulncheck
	bin/govulncheck -db file://$(CURDIR)/$(VULNDB) ./...
	cd $(TOOLING) && ../bin/govulncheck -db file://$(CURDIR)/$(VULNDB) ./...

## build: a static binary in bin/lameduck
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/lameduck .

.PHONY: rehearse
REHEARSE_FLAGS ?=

## rehearse: the long rollout rehearsal, no cluster: the real binary behind a kube-proxy-like balancer,
##   5 rollouts under 400 req/s; REHEARSE_FLAGS="-rollouts 10 -rate 800", or "-prestop 0" to see the race
rehearse:
	cd $(TOOLING) && $(GO) run ./internal/rehearsal/cmd/rehearse $(REHEARSE_FLAGS)

# --- the chart and the manifests ---------------------------------------------------
DIR ?= k8s
VALUES ?=
.PHONY: k8s check-manifests helm

## k8s: write k8s/ from charts/lameduck rendered with its default values (k8s/ is generated: edit the chart;
##   make test fails when the two differ)
k8s:
	cd $(TOOLING) && $(GO) run ./internal/manifest/cmd/k8s -chart ../charts/lameduck -out ../k8s

## check-manifests: every manifest check on DIR (default k8s): a folder of manifests, a kustomize overlay
##   (make check-manifests DIR=overlays/example), or a chart with values files (DIR=charts/lameduck VALUES="a.yaml b.yaml")
check-manifests:
	cd $(TOOLING) && $(GO) run ./internal/manifest/cmd/check-manifests $(foreach f,$(VALUES),-f $(abspath $(f))) $(abspath $(DIR))

## helm: the helm command, built from the version e2e/go.mod pins (helm.sh/helm/v4) into bin/helm; then
##   bin/helm template lameduck charts/lameduck, bin/helm install lameduck charts/lameduck, bin/helm test lameduck
helm: bin/helm
bin/helm: $(TOOLING)/go.mod
	cd $(TOOLING) && $(GO) build -o ../bin/helm helm.sh/helm/v4/cmd/helm

# --- image and kind deployment ------------------------------------------------
IMAGE ?= lameduck:dev
KIND_CLUSTER ?= lameduck-e2e
KIND_VERSION ?= v0.33.0
# kind from PATH, else installed into bin/ from the Go module proxy.
KIND ?= $(shell command -v kind 2>/dev/null || echo bin/kind)
# kubectl must be on PATH (or set KUBECTL); it talks to the cluster's own context.
KUBECTL ?= kubectl
KUBECTL_KIND = $(KUBECTL) --context kind-$(KIND_CLUSTER)

.PHONY: image nats-image deploy

## image: the image $(IMAGE) from a static binary built here (docker build --target prebuilt pulls nothing)
image:
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/lameduck .
	docker build --target prebuilt --build-arg VERSION=$(VERSION) -t $(IMAGE) .

# The NATS server of the chart's nats: section (nats.enabled), at the version e2e/go.mod pins.
NATS_IMAGE ?= lameduck-nats:dev

## nats-image: the image $(NATS_IMAGE): nats-server (pinned in e2e/go.mod) built static here, FROM scratch
##   (e2e/nats/Dockerfile; the build context is a temporary folder holding only the binary; nothing is pulled)
nats-image:
	cd $(TOOLING) && CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags "-s -w" -o ../bin/nats-server github.com/nats-io/nats-server/v2
	@set -e; v=$$(cd $(TOOLING) && $(GO) list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2); \
	  ctx=$$(mktemp -d); trap 'rm -rf "$$ctx"' EXIT; cp bin/nats-server "$$ctx/nats-server"; \
	  set -x; docker build -f $(TOOLING)/nats/Dockerfile --build-arg VERSION=$$v -t $(NATS_IMAGE) "$$ctx"

## deploy: image, load it into kind cluster $(KIND_CLUSTER), apply -k e2e/kind (k8s/ with the kind NodePort), wait
##   for the rollout (with Helm instead: make helm, then bin/helm upgrade --install lameduck charts/lameduck)
##   The cluster must exist: kind create cluster --name $(KIND_CLUSTER) --config e2e/kind-config.yaml
##   An existing Deployment is restarted: the tag stays $(IMAGE), the content is new.
deploy: image $(KIND)
	@command -v $(KUBECTL) >/dev/null || { echo "deploy: $(KUBECTL) not found: install kubectl or set KUBECTL=/path/to/kubectl"; exit 1; }
	$(KIND) load docker-image $(IMAGE) --name $(KIND_CLUSTER)
	@existed=$$($(KUBECTL_KIND) get deploy/lameduck -o name 2>/dev/null); \
	  set -x; \
	  $(KUBECTL_KIND) apply -k e2e/kind && \
	  if [ -n "$$existed" ]; then $(KUBECTL_KIND) rollout restart deploy/lameduck; fi && \
	  $(KUBECTL_KIND) rollout status deploy/lameduck --timeout=180s

bin/kind:
	GOBIN=$(CURDIR)/bin $(GO) install sigs.k8s.io/kind@$(KIND_VERSION)

# --- end-to-end on kind ---------------------------------------------------------
E2E_TIMEOUT ?= 45m
.PHONY: e2e e2e-drain e2e-jetstream soak

## e2e: kind cluster (KIND_CLUSTER to reuse one; KEEP_CLUSTER=1 to keep it), image, helm upgrade --install of
##   charts/lameduck (Helm's Go SDK; E2E_INSTALL=kustomize applies the e2e/kind overlay of k8s/ instead), helm test,
##   rolling restarts under load: zero failed requests, zero lost jobs; then the preStop=0 negative control
e2e: image
	cd e2e && IMAGE=$(IMAGE) $(GO) test -tags e2e -count=1 -v -timeout $(E2E_TIMEOUT) .

## e2e-drain: the e2e's drain scenario (E2E_SCENARIO=drain): its own kind cluster of a control plane and two
##   workers, the e2e/kind overlay of k8s/ applied as kubectl apply -k; each worker drained in turn under load
##   (evictions, the PDB), then the preStop=0 negative control
e2e-drain: image
	cd e2e && IMAGE=$(IMAGE) E2E_SCENARIO=drain $(GO) test -tags e2e -count=1 -v -timeout $(E2E_TIMEOUT) .

## e2e-jetstream: the e2e's JetStream scenario (E2E_SCENARIO=jetstream): one node, the chart with
##   e2e/kind/values-jetstream.yaml (two replicas, jobs in an R3 stream on three NATS servers); under a load of
##   jobs a rolling restart, two SIGKILLs of a replica's process and a NATS pod deleted: every 202 processed;
##   then the negative control, the same SIGKILL with the in-memory queue, must lose jobs
e2e-jetstream: image nats-image
	cd e2e && IMAGE=$(IMAGE) NATS_IMAGE=$(NATS_IMAGE) E2E_SCENARIO=jetstream $(GO) test -tags e2e -count=1 -v \
	  -timeout $(E2E_TIMEOUT) -run 'TestHelmTest|TestJetStream' .

## soak: the e2e at length (not in CI): 60 rollouts asking 2000 req/s, about a million requests; it reports
##   the rate achieved and fails only below half of it (E2E_RATE_FLOOR, percent)
soak: image
	cd e2e && IMAGE=$(IMAGE) E2E_ROLLOUTS=$${E2E_ROLLOUTS:-60} E2E_RATE=$${E2E_RATE:-2000} \
	  E2E_NEGATIVE_ROLLOUTS=0 E2E_OVERLOAD_ROLLOUTS=0 \
	  E2E_RATE_FLOOR=$${E2E_RATE_FLOOR:-50} \
	  $(GO) test -tags e2e -count=1 -v -timeout 6h -run TestRolloutUnderLoad .

# --- benchmarks -------------------------------------------------------------------
# BENCH_FLAGS go to internal/bench/cmd/bench ("-rounds 32 -round 3s" for a longer run, "-procs 1,2,4"),
# HOSTILE_FLAGS to internal/bench/cmd/hostile ("-idle 8000" and so on); -h lists the flags of each.
BENCH_FLAGS ?=
HOSTILE_FLAGS ?=
BENCH_MICRO ?= $(CURDIR)/e2e/internal/bench/micro.txt
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
.PHONY: bench

## bench: GET /hello of lameduck against net/http at GOMAXPROCS 1 and 2, the hostile mix, the Go benchmarks (~8 min)
##   Written to e2e/internal/bench/: RESULTS.md (lameduck under wrk, installed with apt-get if missing, against
##   net/http with lameduck's limits, the goal's baseline, and bare net/http; benchstat's summary of micro.txt, the
##   raw go test -bench output) and HOSTILE.md (the hostile mix and its h2c part against the pod's memory limit,
##   with newcomers served during the hold). A failed GET /hello measurement does not stop the hostile one.
bench:
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk >/dev/null; }
	@echo "go micro-benchmarks -> $(BENCH_MICRO)"
	$(GO) test -run '^$$' -bench . -skip Parallel -benchmem -count 6 ./internal/server/ ./internal/queue/ > $(BENCH_MICRO)
	$(GO) test -run '^$$' -bench Parallel -benchmem -cpu 1,2 -count 6 ./internal/server/ ./internal/queue/ >> $(BENCH_MICRO)
	cd $(TOOLING) && { $(GO) run ./internal/bench/cmd/bench -ldflags "$(LDFLAGS)" -micro $(BENCH_MICRO) $(BENCH_FLAGS); \
	  b=$$?; $(GO) run ./internal/bench/cmd/hostile $(HOSTILE_FLAGS) && exit $$b; }
