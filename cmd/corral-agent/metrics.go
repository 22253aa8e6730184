package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/corral-cloud/corral/agent"
	"github.com/corral-cloud/corral/compute"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsOptions configure the agent's own /metrics listener.
type metricsOptions struct {
	listen, tokenFile string
}

func (m *metricsOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&m.listen, "metrics-listen", "", "address of the agent's /metrics listener, e.g. 127.0.0.1:9470 (default: none). "+
		"An address other than loopback needs --metrics-token-file")
	fs.StringVar(&m.tokenFile, "metrics-token-file", "", "file holding the bearer token /metrics requires "+
		"(Authorization: Bearer TOKEN; 401 without it); required when --metrics-listen is not a loopback address")
}

// check refuses a listener reachable from other machines without a token.
func (m *metricsOptions) check() error {
	if m.listen == "" {
		if m.tokenFile != "" {
			return errors.New("--metrics-token-file needs --metrics-listen")
		}
		return nil
	}
	host, _, err := net.SplitHostPort(m.listen)
	if err != nil {
		return fmt.Errorf("--metrics-listen %q: %w", m.listen, err)
	}
	if m.tokenFile == "" && !loopback(host) {
		return fmt.Errorf("--metrics-listen %s is reachable from other machines: give --metrics-token-file, or listen on 127.0.0.1", m.listen)
	}
	return nil
}

// loopback reports whether host names only the loopback interface.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readToken reads the bearer token: the file's first line, which must not
// be empty.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--metrics-token-file: %w", err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	if tok = strings.TrimSpace(tok); tok == "" {
		return "", fmt.Errorf("--metrics-token-file %s is empty", path)
	}
	return tok, nil
}

// requireToken answers 401 to a request without "Authorization: Bearer
// token". The token is compared in constant time.
func requireToken(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="corral-agent metrics"`)
			http.Error(w, "a bearer token is required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// serveMetrics serves reg on the listener until ctx ends. The listener is
// opened before the agent starts, so a taken address fails the start.
func serveMetrics(ctx context.Context, o metricsOptions, reg *prometheus.Registry, log *slog.Logger) (func(), error) {
	if o.listen == "" {
		return func() {}, nil
	}
	var h http.Handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if o.tokenFile != "" {
		tok, err := readToken(o.tokenFile)
		if err != nil {
			return nil, err
		}
		h = requireToken(tok, h)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "error", err)
		}
	}()
	log.Info("serving /metrics", "addr", ln.Addr().String(), "token", o.tokenFile != "")
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}, nil
}

// newRegistry is the agent's registry: Go runtime and process series, and
// what the agent adds.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// guestStats adapts the compute driver's statistics to the agent's.
type guestStats struct{ d *compute.Driver }

func (g guestStats) GuestStats(ctx context.Context) ([]agent.GuestStats, error) {
	all, err := g.d.GuestStats(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]agent.GuestStats, len(all))
	for i, s := range all {
		out[i] = agent.GuestStats{ServerID: s.Meta.ServerID, Running: s.Running, CPUTimeNs: s.CPUTimeNs,
			MemoryKiB: s.MemoryKiB, RSSKiB: s.RSSKiB, DiskRdBytes: s.DiskRdBytes, DiskWrBytes: s.DiskWrBytes,
			DiskRdReqs: s.DiskRdReqs, DiskWrReqs: s.DiskWrReqs, NetRxBytes: s.NetRxBytes, NetTxBytes: s.NetTxBytes,
			NetRxPackets: s.NetRxPkts, NetTxPackets: s.NetTxPkts}
	}
	return out, nil
}

var _ agent.GuestStater = guestStats{}
