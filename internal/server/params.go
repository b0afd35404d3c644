package server

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// queryParams lists the query parameters each route takes.
var queryParams = map[string][]string{
	"/hello": {"delay"},
	"/jobs":  {"work"},
}

// checkQuery answers 400, with the reason, a request to a known route whose
// query string is malformed, repeats a parameter or names one the route does
// not take: each of those would otherwise leave the default in force,
// silently (url.Values drops what it cannot parse).
func checkQuery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "" {
			if err := queryProblem(r.URL.Path, r.URL.RawQuery); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// queryProblem returns what is wrong with the query string raw of a request
// to path, or nil. Paths without a route pass: the mux answers 404.
func queryProblem(path, raw string) error {
	known, ok := queryParams[path]
	if !ok {
		return nil
	}
	values, err := url.ParseQuery(raw)
	if err != nil {
		return fmt.Errorf("malformed query string: %v", err)
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range values {
			if !yield(k) {
				return
			}
		}
	}) {
		switch {
		case !slices.Contains(known, name):
			return fmt.Errorf("unknown query parameter %q: %s takes %s", name, path, strings.Join(known, ", "))
		case len(values[name]) > 1:
			return fmt.Errorf("query parameter %q given %d times; give it once", name, len(values[name]))
		}
	}
	return nil
}
