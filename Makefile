# lameduck: `make run` starts the service, `make test` runs every test.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: run test lint build

## run: start lameduck locally with its defaults (app :8080, admin :8086)
run:
	$(GO) run -ldflags "$(LDFLAGS)" .

## test: every test, with the race detector (no cluster needed)
test:
	$(GO) test -race -count=1 -timeout 20m ./...

## lint: gofmt, go vet, staticcheck (pinned in go.mod as a tool)
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...
	$(GO) tool staticcheck ./...

## build: a static binary in bin/lameduck
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/lameduck .
