package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMetricsListenerNeedsTokenOffLoopback: /metrics is off by default,
// may listen on loopback without a token, and refuses to start on another
// address without one.
func TestMetricsListenerNeedsTokenOffLoopback(t *testing.T) {
	for _, tc := range []struct {
		name          string
		listen, token string
		wantErr       string
	}{
		{name: "off by default"},
		{name: "loopback without a token", listen: "127.0.0.1:9470"},
		{name: "IPv6 loopback without a token", listen: "[::1]:9470"},
		{name: "localhost without a token", listen: "localhost:9470"},
		{name: "all addresses need a token", listen: ":9470", wantErr: "reachable from other machines"},
		{name: "a public address needs a token", listen: "10.0.0.5:9470", wantErr: "reachable from other machines"},
		{name: "a public address with a token", listen: "0.0.0.0:9470", token: "/etc/tok"},
		{name: "a token without a listener", token: "/etc/tok", wantErr: "needs --metrics-listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := (&metricsOptions{listen: tc.listen, tokenFile: tc.token}).check()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("check() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestMetricsToken: without the bearer token (or with another) /metrics
// answers 401; with it, the metrics.
func TestMetricsToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := readToken(path)
	if err != nil || tok != "s3cret" {
		t.Fatalf("readToken = %q, %v", tok, err)
	}
	h := requireToken(tok, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("metrics")) }))
	for _, tc := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer nope", 401}, {"s3cret", 401}, {"Bearer s3cret", 200}} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/metrics", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("Authorization %q: %d, want %d", tc.auth, rec.Code, tc.want)
		}
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := readToken(empty); err == nil {
		t.Error("an empty token file is accepted")
	}
}
