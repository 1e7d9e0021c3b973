# flapjack: build, test and try the MCP server.
GO      ?= go
BIN     := bin/flapjack
PREFIX  ?= $(HOME)/.local
GOFILES  = $(shell git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')

.PHONY: build test check fmt-check vet tidy-check bench demo install clean

## build: compile bin/flapjack (version and commit come from the build info)
build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/flapjack

## test: the whole gate: gofmt, go vet, go mod tidy, race-enabled tests
test: fmt-check vet tidy-check
	$(GO) test -race -count=1 ./...

check: test

fmt-check:
	@out=$$(gofmt -l $(GOFILES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

tidy-check:
	$(GO) mod tidy -diff

## bench: speed and memory targets (figures in the issue notes)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...

## demo: build, then drive a real session over MCP stdio in a throwaway repository
demo: build
	$(GO) run ./cmd/flapjack-demo -bin $(BIN)

## install: put flapjack on your PATH ($(PREFIX)/bin)
install:
	$(GO) build -buildvcs=auto -o $(PREFIX)/bin/flapjack ./cmd/flapjack

clean:
	rm -rf bin
