# Every test the project has, with its set-up. CI runs `make test` (.ci/run).
GO ?= go
SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Fuzz budgets are counts, not durations: a duration races Go's fuzz
# coordinator at its deadline on a loaded machine ("context deadline
# exceeded" with no failing input; golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 20000x

.PHONY: test setup check race allocs redis benchsmoke js fuzz bench bench-peers

test: setup check race allocs redis js fuzz benchsmoke

# Debian packages the tests drive as independent peers (installed if missing):
# Perl's Protocol::WebSocket (hixie drafts) and Python's websockets (RFC 6455,
# run with /usr/bin/python3); Chromium (/usr/bin/chromium) runs the browser
# client's end-to-end tests (client-js/test/e2e.test.js). Node and npm are
# installed from Debian only if there is no npm at all, so that a Node from
# elsewhere is left alone.
APT_PACKAGES = libprotocol-websocket-perl python3-websockets chromium redis-server

# What the tests need that a fresh machine may lack. Go fetches modules itself;
# npm installs the root package.json's devDependencies (ws, the Node RFC 6455
# peer) whenever node_modules is missing or older than package.json or its lock.
setup:
	$(GO) mod download
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  fi
	@stamp=node_modules/.package-lock.json; \
	  if [ ! -f $$stamp ] || [ package.json -nt $$stamp ] || { [ -f package-lock.json ] && [ package-lock.json -nt $$stamp ]; }; then \
	    if [ -f package-lock.json ]; then echo "npm ci"; npm ci --no-audit --no-fund; \
	    else echo "npm install"; npm install --no-audit --no-fund; fi; \
	  fi

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@node client-js/build.js && git diff --quiet -- client-js/dist || \
	  { echo "client-js/dist is stale: run node client-js/build.js and commit it"; exit 1; }

race:
	$(GO) test -race -count=1 ./...

# Allocation counts that rest on sync.Pool, which the race detector
# defeats on purpose (it drops pooled items at random): without -race.
allocs:
	$(GO) test -count=1 -run 'AllocatesNothing' ./transports/websocket/

# The Redis broker and the chat example are modules of their own (go-redis
# needs a newer Go than the core asks for; go.work joins them); their tests
# use the real Redis on 127.0.0.1:6379, started here if it is down.
redis:
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { \
	  echo "starting redis-server"; \
	  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no; \
	  for i in $$(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done; }
	cd redisbroker && $(GO) vet ./... && $(GO) test -race -count=1 ./...
	cd examples/chat && $(GO) vet ./... && $(GO) test -race -count=1 ./...

# The peer benchmark (bench/, a module of its own: go.work joins it) in quick
# mode: every server and scenario once, small, servers in their own processes.
benchsmoke:
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...

# The browser client's tests: its core with a fake browser, and end to end in
# real headless Chromium against a Go server (client-js/test/).
js:
	npm test

# A short run of every fuzzer beyond its seed corpus (the seeds also run in `race`):
# FUZZTIME=2000000x (or 60s) for a longer one.
fuzz:
	$(GO) test ./transports/wire -run '^$$' -fuzz '^FuzzParseBatch$$' -fuzztime $(FUZZTIME)
	$(GO) test ./transports/wire -run '^$$' -fuzz '^FuzzMessageRoundTrip$$' -fuzztime $(FUZZTIME)
	$(GO) test ./transports/wire -run '^$$' -fuzz '^FuzzJSONString$$' -fuzztime $(FUZZTIME)
	$(GO) test ./transports/wire -run '^$$' -fuzz '^FuzzSharedEncodings$$' -fuzztime $(FUZZTIME)
	$(GO) test ./server -run '^$$' -fuzz '^FuzzParseTopicOffsets$$' -fuzztime $(FUZZTIME)
	$(GO) test ./transports/longpoll -run '^$$' -fuzz '^FuzzServeSend$$' -fuzztime $(FUZZTIME)
	$(GO) test ./transports/websocket/hixie -run '^$$' -fuzz '^FuzzParseHandshake$$' -fuzztime $(FUZZTIME)
	$(GO) test ./transports/websocket/hixie -run '^$$' -fuzz '^FuzzReadFrames$$' -fuzztime $(FUZZTIME)
	$(GO) test ./transports/websocket -run '^$$' -fuzz '^FuzzRFCReadMessage$$' -fuzztime $(FUZZTIME)

# Benchmarks are not part of `test`: they measure, they do not pass or fail.
bench:
	$(GO) test ./server ./session -run '^$$' -bench . -benchmem

# cometkit against sockjs-go, centrifuge, socket.io and a raw WebSocket floor,
# every scenario, full sizes (a few minutes; servers pinned to CPU 1, the load
# generator to CPU 0): writes docs/bench/results.{json,md} and chart.svg.
bench-peers:
	$(GO) run ./bench/cmd/bench -out docs/bench
