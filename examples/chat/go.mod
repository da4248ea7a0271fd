module github.com/cometkit/cometkit/examples/chat

go 1.26.0

require (
	github.com/cometkit/cometkit v0.0.0
	github.com/cometkit/cometkit/redisbroker v0.0.0
	github.com/go-chi/chi/v5 v5.5.0
	github.com/redis/go-redis/v9 v9.23.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/gobwas/pool v0.2.1 // indirect
	github.com/gobwas/ws v1.4.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/gorilla/securecookie v1.1.2 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)

replace (
	github.com/cometkit/cometkit => ../..
	github.com/cometkit/cometkit/redisbroker => ../../redisbroker
)
