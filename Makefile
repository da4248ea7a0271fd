# Every test the project has, with its set-up. CI runs `make test` (.ci/run).
GO ?= go
FUZZTIME ?= 5s

.PHONY: test setup check race fuzz bench

test: setup check race fuzz

# What the tests need that a fresh machine may lack. Go fetches modules itself.
setup:
	$(GO) mod download

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 ./...

# A short run of every fuzzer beyond its seed corpus (the seeds also run in `race`).
fuzz:
	$(GO) test ./transports/wire -run '^$$' -fuzz '^FuzzParseBatch$$' -fuzztime $(FUZZTIME)
	$(GO) test ./transports/wire -run '^$$' -fuzz '^FuzzMessageRoundTrip$$' -fuzztime $(FUZZTIME)
	$(GO) test ./transports/wire -run '^$$' -fuzz '^FuzzJSONString$$' -fuzztime $(FUZZTIME)
	$(GO) test ./transports/longpoll -run '^$$' -fuzz '^FuzzServeSend$$' -fuzztime $(FUZZTIME)

# Benchmarks are not part of `test`: they measure, they do not pass or fail.
bench:
	$(GO) test ./server ./session -run '^$$' -bench . -benchmem
