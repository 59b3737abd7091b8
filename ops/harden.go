package ops

import (
	"net/http"
)

// Harden wraps h with the headers every answer of every role carries:
// X-Content-Type-Options: nosniff, so a browser never guesses an active type
// for an answer that echoes client input.
func Harden(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// orDefault returns v, or def when v is zero: the zero value of a Server
// field means its documented default.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
