# flapjack: build, test and try the MCP server.
GO      ?= go
BIN     := bin/flapjack
PREFIX  ?= $(HOME)/.local
GOFILES  = $(shell git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')

.PHONY: build test check fmt-check vet tidy-check cross dist bench demo install clean npm-deps agents-check

# TARGETS are the platforms flapjack supports and builds release archives for.
TARGETS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
# VERSION names a release build (make dist): the tag, else a describe of the commit.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

# NPM_DIR holds the real clients and agent CLIs the tests run against, at the
# versions pinned in testdata/npm (installed once, again when the pins change).
NPM_DIR ?= $(CURDIR)/.cache/npm
export FLAPJACK_NPM_BIN := $(NPM_DIR)/node_modules/.bin

## build: compile bin/flapjack (version and commit come from the build info)
build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/flapjack

## test: the whole gate: gofmt, go vet, go mod tidy, the six targets, race-enabled tests (with the pinned npm tools;
## the dashboard's browser test keeps a screenshot under .cache/test-output/_artifacts)
test: fmt-check vet tidy-check cross npm-deps
	mkdir -p $(CURDIR)/.cache/test-output
	FLAPJACK_REQUIRE_NPM=1 $(GO) test -race -count=1 -artifacts -outputdir $(CURDIR)/.cache/test-output ./...

## npm-deps: install the pinned agent CLIs, ACP adapters and MCP clients into $(NPM_DIR)
npm-deps: $(NPM_DIR)/.installed

$(NPM_DIR)/.installed: testdata/npm/package.json testdata/npm/package-lock.json
	mkdir -p $(NPM_DIR)
	cp testdata/npm/package.json testdata/npm/package-lock.json $(NPM_DIR)/
	cd $(NPM_DIR) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	# Only Claude Code's install script runs: it puts its native binary in place.
	cd $(NPM_DIR) && npm rebuild @anthropic-ai/claude-code --loglevel=error
	touch $@

## agents-check: the real-CLI and ACP contract tests against the newest published
## agent CLIs and adapters, so a breaking release shows up the day it ships
agents-check:
	rm -rf $(CURDIR)/.cache/npm-latest && mkdir -p $(CURDIR)/.cache/npm-latest
	cd $(CURDIR)/.cache/npm-latest && echo '{"private":true}' > package.json && \
		npm install --no-audit --no-fund --ignore-scripts --loglevel=error @anthropic-ai/claude-code@latest @openai/codex@latest \
			@zed-industries/claude-code-acp@latest @zed-industries/codex-acp@latest @agentclientprotocol/sdk@latest && \
		npm rebuild @anthropic-ai/claude-code --loglevel=error
	FLAPJACK_NPM_BIN=$(CURDIR)/.cache/npm-latest/node_modules/.bin FLAPJACK_REQUIRE_NPM=1 \
		$(GO) test -count=1 -v -run 'TestRealCLIContracts|TestRealACPAdapters|TestACP' ./core/local/

check: test

fmt-check:
	@out=$$(gofmt -l $(GOFILES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

tidy-check:
	$(GO) mod tidy -diff

## cross: build and vet every supported target (release flags, so make dist reuses the builds)
cross:
	@set -e; for t in $(TARGETS); do \
		echo "cross: $$t"; \
		GOOS=$${t%/*} GOARCH=$${t#*/} CGO_ENABLED=0 $(GO) vet ./...; \
		GOOS=$${t%/*} GOARCH=$${t#*/} CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false ./...; \
	done

## dist: reproducible release archives for every target, with SHA256SUMS, in dist/
dist:
	$(GO) run ./cmd/flapjack-dist -version $(VERSION) -commit $$(git rev-parse HEAD 2>/dev/null || echo unknown) \
		-epoch $$(git log -1 --format=%ct 2>/dev/null || echo 0) -targets "$$(echo $(TARGETS) | tr ' ' ',')" -out dist

## bench: speed and memory targets (figures in the issue notes)
bench:
	$(GO) test -p 1 -run '^$$' -bench . -benchmem -count=1 ./...

## demo: build, then drive a real session over MCP stdio in a throwaway repository
demo: build
	$(GO) run ./cmd/flapjack-demo -bin $(BIN)

## install: put flapjack in $(PREFIX)/bin, and say so if that is not on your PATH
install:
	mkdir -p $(PREFIX)/bin
	$(GO) build -buildvcs=auto -o $(PREFIX)/bin/flapjack ./cmd/flapjack
	@echo "installed $(PREFIX)/bin/flapjack: $$($(PREFIX)/bin/flapjack --version)"
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; *) echo "note: $(PREFIX)/bin is not on your PATH; add it (export PATH=\"$(PREFIX)/bin:\$$PATH\") so editors find flapjack";; esac

clean:
	rm -rf bin dist
