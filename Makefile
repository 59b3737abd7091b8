# liveupdates: the two commands a newcomer needs are `make run` and `make test`.
GO          ?= go
BIN         := bin/liveupdates
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Fuzz time per target for `make fuzz`.
FUZZTIME    ?= 20s

.PHONY: run test cluster-test build bench bench-peer lint fuzz clean

## run: the whole product on an embedded nats-server (HTTP on :8080, NATS on 127.0.0.1:4222, data in ./data)
run:
	$(GO) run ./cmd/liveupdates dev

## test: every unit and integration test (real embedded nats-server, real Pusher client), plus vet
## (the fault suite of real processes is apart: make cluster-test)
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m $$($(GO) list ./... | grep -v /clustertest$$)

## cluster-test: the fault suite of real processes: 3 nats-server nodes, 2 api, 2 relay, 2 poller, under
## load, each fault on a fresh cluster; prints a table per scenario. Needs root and iproute2 (`ip netns`).
cluster-test:
	$(GO) test -count=1 -v -timeout 20m -run TestClusterFaults ./clustertest/

## build: the binary at bin/liveupdates
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/liveupdates

## bench: the benchmarks behind BENCHMARKS.md; each reports ratios against a baseline measured in the same run
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1s -count 3 ./producer/
	$(GO) test -run '^$$' -bench BenchmarkRelay -benchtime 1x -count 3 ./relay/
	$(GO) test -run '^$$' -bench BenchmarkPoller -benchtime 1x -count 3 ./poller/
	$(GO) test -run '^$$' -bench BenchmarkSockets -benchtime 20x -count 1 ./pushercompat/

## bench-peer: ours beside Centrifugo v6.9.1 (installed once from the Go module proxy into ~/.cache/liveupdates-bench), same load tool, runs interleaved, medians of 3; about 5 minutes, not part of `make test`
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
