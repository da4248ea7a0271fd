module github.com/cometkit/cometkit

go 1.24

require (
	github.com/go-chi/chi/v5 v5.5.0
	github.com/gobwas/ws v1.4.0
	github.com/google/uuid v1.6.0
	github.com/gorilla/securecookie v1.1.2
	go.uber.org/goleak v1.3.0
)

require (
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/gobwas/pool v0.2.1 // indirect
)
