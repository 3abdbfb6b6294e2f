package caddymodule

import (
	_ "embed"
	"net/http"
)

// openAPIDocument describes the management API (OpenAPI 3.1). It is a
// file rather than generated so it reads as documentation; openapi_test.go
// checks it against real answers of every route so it cannot drift.
//
//go:embed openapi.json
var openAPIDocument []byte

// serveOpenAPI answers GET /webhooks/openapi.json, on the admin endpoint
// and through webhook_admin alike.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	// Revalidated on each use, so an upgraded binary is seen at once.
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(openAPIDocument)
}
