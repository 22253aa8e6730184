// Command corrald is Corral's control plane: the REST API over the store,
// and the background loops.
//
//	corrald --data-dir /var/lib/corral                 # embedded SQLite
//	corrald --postgres-dsn postgres://…                # several replicas
//	corrald --version                                  # build information
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/corral-cloud/corral/api/server"
	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/buildinfo"
	"github.com/corral-cloud/corral/placement"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/net/netutil"
)

func main() {
	// Everything corrald creates (database, its WAL and backups, tokens,
	// keys, image data) is its own: mode 0600 files, 0700 directories.
	syscall.Umask(0o077)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runMain runs corrald with args and returns its exit status: 0 after
// --help (-h) or a version request (`corrald version`, --version), 1 when
// it fails.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if buildinfo.Requested(args) {
		fmt.Fprint(stdout, buildinfo.Read("corrald"))
		return 0
	}
	err := run(ctx, args, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintln(stderr, "corrald:", err)
		return 1
	}
}

type options struct {
	listen, dataDir, postgresDSN, tlsCert, tlsKey, tokenFile, logLevel string
	imageDir                                                           string
	defaultWeigher                                                     string
	hostDownAfter, maintenanceEvery, tokenGrace, auditRetention        time.Duration
	heartbeatMaxAge                                                    time.Duration
	maxBody, maxImage, failsafeMarginMiB                               int64
	insecureHTTP                                                       bool
	serve                                                              serveOptions
	migrationBackups                                                   int
	bm                                                                 *bmOptions // bare metal (baremetal.go)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("corrald", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8440", "address to serve the API on")
	fs.StringVar(&o.dataDir, "data-dir", "/var/lib/corral", "directory for the SQLite database, image data and the bootstrap token")
	fs.StringVar(&o.postgresDSN, "postgres-dsn", os.Getenv("CORRAL_POSTGRES_DSN"), "PostgreSQL DSN; when set, state lives there instead of SQLite (env CORRAL_POSTGRES_DSN)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate file (serve HTTPS with --tls-key)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "TLS key file")
	fs.StringVar(&o.imageDir, "image-dir", "", "where image data lives (default <data-dir>/images); replicas on PostgreSQL must share it")
	fs.StringVar(&o.tokenFile, "bootstrap-token-file", "", "where to write the first admin token (default <data-dir>/admin-token)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&o.hostDownAfter, "host-down-after", 30*time.Second, "mark a host down when its last heartbeat is older")
	fs.DurationVar(&o.maintenanceEvery, "maintenance-interval", 10*time.Second, "how often the background loops run")
	fs.DurationVar(&o.tokenGrace, "expired-token-grace", 24*time.Hour, "keep expired tokens this long before purging them")
	fs.Int64Var(&o.maxBody, "max-body-bytes", server.DefaultMaxBodyBytes, "largest JSON request body")
	fs.Int64Var(&o.maxImage, "max-image-bytes", 64<<30, "largest image upload")
	fs.DurationVar(&o.auditRetention, "audit-retention", 90*24*time.Hour, "keep audit entries this long")
	fs.Int64Var(&o.failsafeMarginMiB, "failsafe-margin-mib", placement.DefaultFailsafeMarginMiB,
		"measured free memory a host must keep after a placement, whatever allocations say")
	fs.DurationVar(&o.heartbeatMaxAge, "heartbeat-max-age", placement.DefaultHeartbeatMaxAge,
		"a host whose last heartbeat is older is not a placement candidate")
	fs.IntVar(&o.migrationBackups, "migration-backups", store.DefaultBackupsKept,
		"SQLite: pre-migration backups to keep, the newest first (-1 keeps all)")
	fs.StringVar(&o.defaultWeigher, "default-weigher", "spread", "placement policy where neither request nor aggregate names one: pack or spread")
	fs.BoolVar(&o.insecureHTTP, "insecure-http", false, "serve plain HTTP on an address that is not loopback "+
		"(bearer tokens then cross the network in clear); without it such an address needs --tls-cert and --tls-key")
	fs.Bool("version", false, "print build information (version, VCS revision and time, Go version) and exit; also: corrald version")
	serveFlags(fs, &o.serve)
	o.bm = baremetalFlags(fs)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return o, errors.New("--tls-cert and --tls-key go together")
	}
	if o.defaultWeigher != "pack" && o.defaultWeigher != "spread" {
		return o, fmt.Errorf("--default-weigher is %q, want pack or spread", o.defaultWeigher)
	}
	if err := o.serve.check(); err != nil {
		return o, err
	}
	if o.migrationBackups == 0 || o.migrationBackups < -1 {
		return o, errors.New("--migration-backups must be at least 1, or -1 to keep all")
	}
	if o.failsafeMarginMiB < 0 {
		return o, errors.New("--failsafe-margin-mib must not be negative")
	}
	if o.imageDir == "" {
		o.imageDir = filepath.Join(o.dataDir, "images")
	}
	if o.tokenFile == "" {
		o.tokenFile = filepath.Join(o.dataDir, "admin-token")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := checkPlainHTTP(o.listen, o.tlsCert != "", o.insecureHTTP); err != nil {
		return err
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return err
	}
	if o.postgresDSN == "" {
		tightenModes(filepath.Join(o.dataDir, "corral.db"), log)
	}
	st, err := store.Open(ctx, store.Config{PostgresDSN: o.postgresDSN, SQLitePath: filepath.Join(o.dataDir, "corral.db"),
		Logger: log, BackupsKept: o.migrationBackups})
	if err != nil {
		return err
	}
	defer st.Close()
	if st.BackupPath != "" {
		log.Warn("database migrated; the copy from before is kept", "backup", st.BackupPath)
	}
	if err := bootstrap(ctx, st, o.tokenFile, log); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bm, err := startBaremetal(ctx, o.bm, st, o.dataDir, o.imageDir, log, reg)
	if err != nil {
		return err
	}
	api, err := server.New(server.Config{Store: st, ImageDir: o.imageDir, Logger: log, Baremetal: bm,
		MaxBodyBytes: o.maxBody, MaxImageBytes: o.maxImage, Registry: reg, HostDownAfter: o.hostDownAfter,
		TokenPurgeGrace: o.tokenGrace, AuditRetention: o.auditRetention, RateLimits: o.serve.rateLimits(),
		Timeouts: server.Timeouts{Read: o.serve.readTimeout, Write: o.serve.writeTimeout},
		Placement: placement.Config{FailsafeMarginMiB: o.failsafeMarginMiB, HeartbeatMaxAge: o.heartbeatMaxAge,
			DefaultWeigher: placement.Weigher(o.defaultWeigher)}})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	if err := checkPlainHTTP(ln.Addr().String(), o.tlsCert != "", o.insecureHTTP); err != nil {
		ln.Close()
		return err
	}
	if o.serve.maxConns > 0 {
		// Past the cap, new connections wait in the kernel's backlog
		// until the timeouts below free a slot.
		ln = netutil.LimitListener(ln, o.serve.maxConns)
	}
	srv := o.serve.server(api.Handler(), slog.NewLogLogger(log.Handler(), slog.LevelWarn))
	// Headers over the limit get 431 before any handler runs.
	srv.MaxHeaderBytes = server.MaxHeaderBytes
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("load TLS key pair: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	go api.RunMaintenance(ctx, o.maintenanceEvery)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("corrald serving", "addr", ln.Addr().String(), "store", st.Dialect(), "tls", o.tlsCert != "")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return srv.Shutdown(shutCtx)
}

// bootstrap creates the first admin token when the store has none, writes
// it to tokenFile (mode 0600) and says where. It never expires; revoke it
// once other admins exist.
func bootstrap(ctx context.Context, st *store.Store, tokenFile string, log *slog.Logger) error {
	secret, err := st.BootstrapAdmin(ctx)
	if err != nil {
		return err
	}
	if secret == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(tokenFile), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(tokenFile, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write bootstrap admin token: %w", err)
	}
	if err := os.Chmod(tokenFile, 0o600); err != nil { // an old file keeps its mode through WriteFile
		return fmt.Errorf("write bootstrap admin token: %w", err)
	}
	log.Warn("created the bootstrap admin token", "file", tokenFile)
	return nil
}
