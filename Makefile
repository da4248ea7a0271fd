# Every test the project has, with its set-up. CI runs `make test` (.ci/run).
GO ?= go
SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FUZZTIME ?= 5s

.PHONY: test setup check race fuzz bench

test: setup check race fuzz

# Debian packages the tests drive as independent peers (installed if missing).
APT_PACKAGES = libprotocol-websocket-perl

# What the tests need that a fresh machine may lack. Go fetches modules itself.
setup:
	$(GO) mod download
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  fi

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
	$(GO) test ./transports/websocket/hixie -run '^$$' -fuzz '^FuzzParseHandshake$$' -fuzztime $(FUZZTIME)
	$(GO) test ./transports/websocket/hixie -run '^$$' -fuzz '^FuzzReadFrames$$' -fuzztime $(FUZZTIME)

# Benchmarks are not part of `test`: they measure, they do not pass or fail.
bench:
	$(GO) test ./server ./session -run '^$$' -bench . -benchmem
