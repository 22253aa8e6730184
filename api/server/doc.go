// Package server is corrald's REST API: echo routes and handlers under /v1,
// one file per resource. Handlers decode and validate the request, call the
// store, and encode the answer; every error leaves as the one JSON shape of
// api/types.Error, with the status that its code maps to.
//
// Middleware runs in this order, outermost first, and the order matters:
// request ID → metrics (so every answer is counted, errors too) →
// authentication (who is calling) → audit (needs the caller; records the
// final status) → recover (a panic becomes a 500 that metrics and audit see,
// not a dead process) → idempotency (needs the caller to scope keys, and runs
// inside audit so a replay is audited).
//
// The package also serves the web dashboard (ui.go): static files embedded
// from ui/, needing no token and holding no data, which read everything
// from /v1 with the user's token like any other client.
package server
