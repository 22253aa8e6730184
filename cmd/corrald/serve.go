package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/corral-cloud/corral/api/server"
)

// serveOptions bound what one client can hold: connection time limits,
// the number of connections, and request rates.
type serveOptions struct {
	readHeaderTimeout, readTimeout, writeTimeout, idleTimeout time.Duration
	maxConns                                                  int
	tokenRate, agentRate, sourceRate                          float64
	tokenBurst, agentBurst, sourceBurst                       int
}

// serveFlags registers the serving flags on fs.
func serveFlags(fs *flag.FlagSet, o *serveOptions) {
	fs.DurationVar(&o.readHeaderTimeout, "read-header-timeout", 10*time.Second,
		"time limit for a client to send a request's headers (also how long a new connection may stay silent)")
	fs.DurationVar(&o.readTimeout, "read-timeout", time.Minute,
		"time limit for reading a whole request, body included; image uploads get another one per MiB received")
	fs.DurationVar(&o.writeTimeout, "write-timeout", time.Minute,
		"time limit for answering a request; long polls get their wait plus 15 s, image downloads another one per MiB sent")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 2*time.Minute, "close a keep-alive connection idle this long")
	fs.IntVar(&o.maxConns, "max-connections", 4096, "most connections served at once (0: no limit); more wait to be accepted")
	fs.Float64Var(&o.tokenRate, "rate-limit-token", 50, "requests per second allowed to each user token (0: no limit)")
	fs.IntVar(&o.tokenBurst, "rate-limit-token-burst", 200, "burst of requests allowed to each user token")
	fs.Float64Var(&o.agentRate, "rate-limit-agent", 20, "requests per second allowed to each agent token, a budget apart from users' (0: no limit)")
	fs.IntVar(&o.agentBurst, "rate-limit-agent-burst", 100, "burst of requests allowed to each agent token")
	fs.Float64Var(&o.sourceRate, "rate-limit-source", 10,
		"requests per second allowed, per client address, without a valid token: health, metrics, failed authentications (0: no limit)")
	fs.IntVar(&o.sourceBurst, "rate-limit-source-burst", 50, "burst of requests allowed per client address without a valid token")
}

func (o serveOptions) check() error {
	for name, d := range map[string]time.Duration{"--read-header-timeout": o.readHeaderTimeout, "--read-timeout": o.readTimeout,
		"--write-timeout": o.writeTimeout, "--idle-timeout": o.idleTimeout} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive", name)
		}
	}
	if o.maxConns < 0 {
		return errors.New("--max-connections must not be negative")
	}
	for name, r := range map[string]float64{"--rate-limit-token": o.tokenRate, "--rate-limit-agent": o.agentRate,
		"--rate-limit-source": o.sourceRate} {
		if r < 0 {
			return fmt.Errorf("%s must not be negative", name)
		}
	}
	for name, b := range map[string]int{"--rate-limit-token-burst": o.tokenBurst, "--rate-limit-agent-burst": o.agentBurst,
		"--rate-limit-source-burst": o.sourceBurst} {
		if b < 1 {
			return fmt.Errorf("%s must be at least 1", name)
		}
	}
	return nil
}

func (o serveOptions) rateLimits() server.RateLimits {
	return server.RateLimits{
		Token:  server.Rate{PerSecond: o.tokenRate, Burst: o.tokenBurst},
		Agent:  server.Rate{PerSecond: o.agentRate, Burst: o.agentBurst},
		Source: server.Rate{PerSecond: o.sourceRate, Burst: o.sourceBurst},
	}
}

// server is the http.Server for h with the time limits. The API extends
// the read and write deadlines itself for long polls and image transfers
// (server.Timeouts).
func (o serveOptions) server(h http.Handler, errLog *log.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: o.readHeaderTimeout, ReadTimeout: o.readTimeout,
		WriteTimeout: o.writeTimeout, IdleTimeout: o.idleTimeout, ErrorLog: errLog}
}

// checkPlainHTTP refuses plain HTTP on an address other machines can reach
// unless insecure allows it: bearer tokens travel in every request.
func checkPlainHTTP(addr string, tls, insecure bool) error {
	if tls || insecure {
		return nil
	}
	loopback, err := isLoopback(addr)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", addr, err)
	}
	if !loopback {
		return fmt.Errorf("--listen %s is not a loopback address: serve HTTPS with --tls-cert and --tls-key, "+
			"or give --insecure-http to send tokens in clear over the network", addr)
	}
	return nil
}

// isLoopback reports whether host:port can only be reached from this
// machine. An empty host (every address) is not loopback; a name counts
// only if all its addresses are loopback.
func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	if host == "" {
		return false, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback(), nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return false, err
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false, nil
		}
	}
	return len(ips) > 0, nil
}

// tightenModes makes the SQLite database, its WAL and shared-memory files
// and its backups (made by an older corrald, or copied in with a looser
// mode) readable by corrald's user only. New ones are made 0600 by the
// umask set in main.
func tightenModes(db string, log *slog.Logger) {
	files, _ := filepath.Glob(db + "*")
	for _, f := range files {
		fi, err := os.Lstat(f)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		if err := os.Chmod(f, fi.Mode().Perm()&0o700); err != nil {
			log.Warn("could not make a database file private", "file", f, "error", err)
			continue
		}
		log.Warn("database file was readable by others; made it private", "file", f, "was", fi.Mode().Perm().String())
	}
}
