package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corral-cloud/corral/api/openapi"
	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/placement"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures a Server.
type Config struct {
	// Store is where state lives. Required.
	Store *store.Store
	// ImageDir holds uploaded image data. Required.
	ImageDir string
	// Logger receives errors and background-loop messages.
	Logger *slog.Logger
	// MaxBodyBytes bounds JSON bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxImageBytes bounds an image upload; 0 means 64 GiB.
	MaxImageBytes int64
	// QemuImg is the qemu-img binary that checks uploaded images' formats;
	// "" means qemu-img from $PATH. Without it uploads answer 503.
	QemuImg string
	// Registry collects metrics; nil makes a new one.
	Registry *prometheus.Registry
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time
	// HostDownAfter marks a host down when its heartbeat is older; 0 means 30 s.
	HostDownAfter time.Duration
	// Baremetal wires bare-metal nodes (nodes.go); zero means nodes can be
	// enrolled only once a keyring is given, and are not driven.
	Baremetal BaremetalConfig
	// WatchRecheck is how often an agent's waiting watch re-reads its
	// host's guests, to see changes made through another replica; 0 means
	// 2 s. Changes made through this replica wake it at once.
	WatchRecheck time.Duration
	// Placement configures the engine: failsafe margin, heartbeat age,
	// overhead, default weigher. Aggregates come from the store.
	Placement placement.Config
	// AuditRetention is how long audit entries are kept; 0 means 90 days.
	AuditRetention time.Duration
	// TokenPurgeGrace keeps expired tokens this long (so callers see
	// "token expired" rather than "unknown token") before purging them.
	TokenPurgeGrace time.Duration
	// RateLimits are the per-token, per-agent and per-address request
	// budgets; zero disables them.
	RateLimits RateLimits
	// Timeouts are the serving http.Server's read and write timeouts, which
	// long polls and image transfers extend for themselves; zero means
	// none are set.
	Timeouts Timeouts
	// TombstoneRetention keeps the record of a confirmed guest deletion
	// this long; 0 means 7 days.
	TombstoneRetention time.Duration
}

// Server is corrald's HTTP API.
type Server struct {
	cfg     Config
	store   *store.Store
	images  *imageStore
	log     *slog.Logger
	echo    *echo.Echo
	metrics *metrics
	reg     *prometheus.Registry
	placer  *placer
	hub     *hub
	// consoles wakes console follows (console.go).
	consoles *consoleHub
	limits   *limiters
	// refusals audits refused calls, aggregating floods.
	refusals *refusalLog
}

// New builds the API and its routes.
func New(cfg Config) (*Server, error) {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxImageBytes == 0 {
		cfg.MaxImageBytes = 64 << 30
	}
	if cfg.QemuImg == "" {
		cfg.QemuImg = "qemu-img"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.HostDownAfter == 0 {
		cfg.HostDownAfter = 30 * time.Second
	}
	if cfg.AuditRetention == 0 {
		cfg.AuditRetention = 90 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.WatchRecheck == 0 {
		cfg.WatchRecheck = 2 * time.Second
	}
	if cfg.TombstoneRetention == 0 {
		cfg.TombstoneRetention = 7 * 24 * time.Hour
	}
	images, err := newImageStore(cfg.ImageDir)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, store: cfg.Store, images: images, log: cfg.Logger, reg: cfg.Registry, hub: newHub(),
		consoles: &consoleHub{keys: map[string]*consoleWaiters{}}}
	s.metrics = newMetrics(cfg.Registry)
	s.refusals = newRefusalLog(cfg.Store, cfg.Logger, cfg.Now)
	s.limits = newLimiters(cfg.RateLimits, cfg.Registry)
	cfg.Registry.MustRegister(newUnknownCollector(s), newFleetCollector(s))
	s.placer = newPlacer(cfg.Store, cfg.Now, cfg.Placement, s.metrics)
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	// Recover sits inside transact so that a panic rolls back the request's
	// transaction and is answered, counted and audited like any other 500.
	// The rate limits come before transact, so that a refused flood writes
	// no audit rows: the address budget before everything else (it also
	// slows token guessing), the token budgets right after authentication.
	// checkInput comes before authenticate: a NUL byte or invalid UTF-8
	// must reach neither the token lookup nor the store.
	e.Use(s.requestID, s.observe, s.limitSource, s.checkInput, s.authenticate, s.limitToken, s.transact, middleware.Recover())
	s.echo = e
	s.routes()
	return s, nil
}

// Handler returns the HTTP handler of the API.
func (s *Server) Handler() http.Handler { return s.echo }

func (s *Server) now() time.Time { return s.cfg.Now() }

func (s *Server) routes() {
	e := s.echo
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})))

	v1 := e.Group("/v1")
	s.regionRoutes(v1)
	s.zoneRoutes(v1)
	s.aggregateRoutes(v1)
	s.hostRoutes(v1)
	s.flavorRoutes(v1)
	s.imageRoutes(v1)
	s.projectRoutes(v1)
	s.serverRoutes(v1)
	s.groupRoutes(v1)
	s.tokenRoutes(v1)
	s.guestRoutes(v1)
	s.unknownGuestRoutes(v1)
	s.consoleRoutes(v1)
	s.reportRoutes(v1)
	s.networkRoutes(v1)
	s.keypairRoutes(v1)
	s.nodeRoutes(v1)
	v1.GET("/audit", s.listAudit)
	v1.GET("/alerts", s.listAlerts)
	s.uiRoutes(e)
	v1.GET("/openapi.json", s.openAPI)
}

// openAPI serves the OpenAPI 3 document of this API (api/openapi), built
// from the same route table that api/server's tests compare with echo's.
// Like every /v1 route it needs a token, of any role: the route list is
// the same for everyone, but it is not handed to anonymous scanners.
func (s *Server) openAPI(c echo.Context) error {
	doc, err := openapi.JSON()
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, doc)
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when the store answers and its schema is at least the
// one this binary writes. A newer schema means a rolling upgrade is under
// way: migrations only add, so this replica keeps serving until it is
// replaced, and says so (upgrade_pending) rather than leaving the pool.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		return types.Errorf(types.CodeUnavailable, "store unreachable: %v", err)
	}
	v, err := s.store.SchemaVersion(ctx)
	if err != nil {
		return types.Errorf(types.CodeUnavailable, "read schema version: %v", err)
	}
	if v < store.LatestVersion {
		return types.Errorf(types.CodeUnavailable, "schema version %d, want %d", v, store.LatestVersion)
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "ready", "schema_version": v, "store": s.store.Dialect(),
		"upgrade_pending": v > store.LatestVersion})
}

// RunMaintenance runs the background loops until ctx ends: it marks hosts
// without a recent heartbeat down, and purges expired tokens (an operator's
// database once filled with them), old idempotency keys, audit entries
// past their retention, usage history older than 8 days and the consoles
// and usage of deleted servers.
func (s *Server) RunMaintenance(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.MaintainOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// MaintainOnce runs one pass of the background loops.
func (s *Server) MaintainOnce(ctx context.Context) {
	now := s.now()
	if n, err := s.store.MarkStaleHostsDown(ctx, now.Add(-s.cfg.HostDownAfter)); err != nil {
		s.log.Error("mark stale hosts down", "error", err)
	} else if n > 0 {
		s.log.Warn("hosts marked down: no heartbeat", "count", n, "after", s.cfg.HostDownAfter)
	}
	if n, err := s.store.PurgeExpiredTokens(ctx, now.Add(-s.cfg.TokenPurgeGrace)); err != nil {
		s.log.Error("purge expired tokens", "error", err)
	} else if n > 0 {
		s.log.Info("purged expired tokens", "count", n)
	}
	s.refusals.flush(ctx)
	if n, err := s.store.PurgeTombstones(ctx, now.Add(-s.cfg.TombstoneRetention)); err != nil {
		s.log.Error("purge confirmed guest deletions", "error", err)
	} else if n > 0 {
		s.log.Info("purged confirmed guest deletions", "count", n, "older_than", s.cfg.TombstoneRetention)
	}
	if _, err := s.store.PurgeUsage(ctx, now.Add(-store.UsageKeepHours*time.Hour)); err != nil {
		s.log.Error("purge usage history", "error", err)
	}
	if _, err := s.store.PurgeConsoles(ctx, now); err != nil {
		s.log.Error("purge consoles of deleted servers", "error", err)
	}
	if _, err := s.store.PurgeIdempotencyKeys(ctx, now.Add(-24*time.Hour)); err != nil {
		s.log.Error("purge idempotency keys", "error", err)
	}
	if n, err := s.store.PurgeAudit(ctx, now.Add(-s.cfg.AuditRetention)); err != nil {
		s.log.Error("purge audit log", "error", err)
	} else if n > 0 {
		s.log.Info("purged old audit entries", "count", n, "retention", s.cfg.AuditRetention)
	}
}

// Paging.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// listOptions reads limit, cursor and the allowed filters from the query.
// Unknown parameters are refused, so a typo never silently lists everything.
// resolve, when set, turns a filter value (a name) into an ID.
func listOptions(c echo.Context, allowed map[string]func(string) (string, error)) (store.ListOptions, error) {
	opts := store.ListOptions{Limit: defaultLimit, Filters: map[string]string{}}
	for k, vs := range c.QueryParams() {
		if len(vs) > 1 {
			return opts, types.FieldError(k, "given %d times; give it once", len(vs))
		}
		v := vs[0]
		switch k {
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxLimit {
				return opts, types.FieldError("limit", "must be an integer from 1 to %d", maxLimit)
			}
			opts.Limit = n
		case "cursor":
			b, err := base64.RawURLEncoding.DecodeString(v)
			if err != nil || !strings.Contains(string(b), "-") {
				return opts, types.FieldError("cursor", "not a cursor returned by this API")
			}
			opts.After = string(b)
		default:
			resolve, ok := allowed[k]
			if !ok {
				return opts, types.FieldError(k, "unknown query parameter").WithDetail("allowed", keys(allowed))
			}
			if resolve != nil {
				id, err := resolve(v)
				if err != nil {
					return opts, refError(k, err)
				}
				v = id
			}
			opts.Filters[k] = v
		}
	}
	return opts, nil
}

// keys returns the query parameters a list takes, sorted: its filters,
// limit and cursor.
func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m)+2)
	for k := range m {
		out = append(out, k)
	}
	return sorted(append(out, "limit", "cursor")...)
}

// sorted returns a sorted copy of v: the lists in error details
// (details.allowed and the like) come in a stable order, whatever order
// the code holds them in.
func sorted(v ...string) []string {
	out := slices.Clone(v)
	slices.Sort(out)
	return out
}

// listJSON encodes a page, turning the store's next ID into a cursor.
func listJSON[T any](c echo.Context, l types.List[T], err error) error {
	if err != nil {
		return err
	}
	if l.NextCursor != "" {
		l.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(l.NextCursor))
	}
	if l.Items == nil {
		l.Items = []T{}
	}
	return jsonETag(c, http.StatusOK, l)
}

// jsonETag writes v as JSON with a weak ETag made from its bytes, so that a
// poller (the dashboard) sending If-None-Match gets 304 and no body while
// the answer is unchanged. Lists have no revision of their own; the
// digest of the answer stands for one.
func jsonETag(c echo.Context, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	etag := strconv.Quote(hex.EncodeToString(sum[:12]))
	c.Response().Header().Set("ETag", "W/"+etag)
	req := c.Request()
	if status == http.StatusOK && req.Method == http.MethodGet && noneMatch(req.Header.Values("If-None-Match"), etag) {
		return c.NoContent(http.StatusNotModified)
	}
	return c.JSONBlob(status, b)
}

// ifMatch reads the If-Match header: a revision, quoted or not; 0 if absent.
func ifMatch(c echo.Context) (int64, error) {
	h := c.Request().Header.Get("If-Match")
	if h == "" || h == "*" {
		return 0, nil
	}
	n, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(h, "W/"), `"`), 10, 64)
	if err != nil || n < 1 {
		return 0, types.FieldError("If-Match", "must be a revision number such as \"3\"")
	}
	return n, nil
}

// object writes one object with its revision as ETag. A GET whose
// If-None-Match names that ETag is answered 304 Not Modified, with the
// ETag and no body.
func object(c echo.Context, status int, revision int64, v any) error {
	if revision > 0 {
		etag := strconv.Quote(strconv.FormatInt(revision, 10))
		c.Response().Header().Set("ETag", etag)
		req := c.Request()
		if status == http.StatusOK && req.Method == http.MethodGet && noneMatch(req.Header.Values("If-None-Match"), etag) {
			return c.NoContent(http.StatusNotModified)
		}
	}
	return c.JSON(status, v)
}

// noneMatch reports whether If-None-Match values name etag, or are "*".
// The comparison is weak (RFC 9110, 13.1.2): W/"3" matches "3".
func noneMatch(values []string, etag string) bool {
	for _, v := range values {
		for _, tag := range strings.Split(v, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
				return true
			}
		}
	}
	return false
}
