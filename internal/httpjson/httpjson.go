// Package httpjson writes the JSON answers every handler of the project
// gives, errors included, the same way.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// Write writes v as the JSON body of a response with status. Answers are
// never cached and never sniffed as another type.
func Write(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":"encoding response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// Error writes {"error": message} with status.
func Error(w http.ResponseWriter, status int, message string) {
	Write(w, status, struct {
		Error string `json:"error"`
	}{message})
}
