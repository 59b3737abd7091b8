# liveupdates: the two commands a newcomer needs are `make run` and `make test`.
GO          ?= go
BIN         := bin/liveupdates
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Fuzz time per target for `make fuzz`.
FUZZTIME    ?= 20s

.PHONY: run test test-go test-client chromium-installed cluster-test build bench bench-peer lint fuzz clean

## run: the whole product on an embedded nats-server (HTTP on :8080, NATS on 127.0.0.1:4222, data in ./data)
run:
	$(GO) run ./cmd/liveupdates dev

## test: every unit and integration test (real embedded nats-server, real Pusher client), plus vet, plus the
## browser client's node and Chromium tests (the fault suite of real processes is apart: make cluster-test)
test: test-go test-client

test-go:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m $$($(GO) list ./... | grep -v /clustertest$$)

## cluster-test: the fault suite of real processes: 3 nats-server nodes, 2 api, 2 relay, 2 poller, under
## load, each fault on a fresh cluster; prints a table per scenario. Needs root and iproute2 (`ip netns`).
cluster-test:
	$(GO) test -count=1 -v -timeout 20m -run TestClusterFaults ./clustertest/

# The browser client's tests: node --test with the real pusher-js against a
# real `liveupdates dev`, and Chromium end to end. What they need is
# installed here, or the run stops saying how: never a silent skip.
CHROMIUM    ?= /usr/bin/chromium
TEST_BIN    := bin/liveupdates-clienttest

## test-client: the client's node and Chromium tests alone
test-client: client/node_modules/.package-lock.json chromium-installed
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || { echo "node 20 or newer is needed for the client tests (found $$(node --version))"; exit 1; }
	$(GO) build -o $(TEST_BIN) ./cmd/liveupdates
	cd client && LIVEUPDATES_BIN=$(CURDIR)/$(TEST_BIN) CHROMIUM=$(CHROMIUM) node --test --test-concurrency=1 --test-timeout=600000 test/*.test.js

client/node_modules/.package-lock.json: client/package.json client/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 20 or newer (https://nodejs.org or apt-get install -y nodejs npm)"; exit 1; }
	cd client && npm ci --no-audit --no-fund

chromium-installed:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium for the end-to-end test"; \
	    apt-get install -y chromium || { apt-get update && apt-get install -y chromium; } || exit 1; \
	  else \
	    echo "$(CHROMIUM) is missing; the end-to-end test needs it: run  sudo apt-get install -y chromium  (or make test CHROMIUM=/path/to/chromium)"; exit 1; \
	  fi; \
	fi

## build: the binary at bin/liveupdates
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/liveupdates

## bench: the benchmarks behind BENCHMARKS.md; each reports ratios against a baseline measured in the same run
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1s -count 3 ./producer/
	$(GO) test -run '^$$' -bench '^BenchmarkRelay$$' -benchtime 1x -count 3 ./relay/
	$(GO) test -run '^$$' -bench '^BenchmarkPartitionedReplicas$$' -benchtime 1x -count 1 ./relay/
	$(GO) test -run '^$$' -bench '^BenchmarkPoller$$' -benchtime 1x -count 3 ./poller/
	$(GO) test -run '^$$' -bench '^BenchmarkDeepResume$$' -benchtime 20x -count 3 ./poller/
	$(GO) test -run '^$$' -bench '^BenchmarkSockets$$' -benchtime 20x -count 1 ./pushercompat/

## bench-peer: ours beside Centrifugo v6.9.1 (installed once from the Go module proxy into ~/.cache/liveupdates-bench), same load tool, runs interleaved, medians of 3; about 7 minutes (BENCHMARKS.md), not part of `make test`
bench-peer:
	$(GO) run ./bench/peer $(BENCH_PEER_FLAGS)

## lint: gofmt, go vet and staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## fuzz: run every fuzz target for FUZZTIME each (seed corpora run in `make test` anyway)
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin data
