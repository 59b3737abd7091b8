# liveupdates: the two commands a newcomer needs are `make run` and `make test`.
GO          ?= go
BIN         := bin/liveupdates
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Fuzz time per target for `make fuzz`.
FUZZTIME    ?= 20s

.PHONY: run test build bench lint fuzz clean

## run: the whole product on an embedded nats-server (HTTP on :8080, NATS on 127.0.0.1:4222, data in ./data)
run:
	$(GO) run ./cmd/liveupdates dev

## test: every unit and integration test (real embedded nats-server, real Pusher client), plus vet
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

## build: the binary at bin/liveupdates
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/liveupdates

## bench: the benchmarks behind BENCHMARKS.md; each reports ratios against a baseline measured in the same run
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1s -count 3 ./producer/
	$(GO) test -run '^$$' -bench BenchmarkRelay -benchtime 1x -count 3 ./relay/
	$(GO) test -run '^$$' -bench BenchmarkPoller -benchtime 1x -count 3 ./poller/
	$(GO) test -run '^$$' -bench BenchmarkSockets -benchtime 20x -count 1 ./pushercompat/

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
