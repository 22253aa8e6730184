package server

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Rate is one class's request budget: a token bucket that refills at
// PerSecond and holds Burst requests. A zero PerSecond disables the class.
type Rate struct {
	PerSecond float64
	Burst     int
}

// RateLimits are the request budgets. Each class keeps one bucket per key
// (a token, or a client address) in a table of its own, so that one class
// spending its budget never spends another's.
type RateLimits struct {
	// Token is the budget of each token that is not an agent's (admins,
	// members, readers, registrars), keyed by token ID.
	Token Rate
	// Agent is the budget of each agent token: heartbeats, guest reports,
	// watches, image downloads. It is separate from Token so that a noisy
	// tenant can never starve the hosts' agents.
	Agent Rate
	// Source is the budget, per client address (IPv6 per /64), of requests
	// that carry no valid token: /healthz, /readyz, /metrics, and every
	// request whose token is missing, unknown or expired. While a source's
	// budget is spent its /v1 requests are refused before their token is
	// looked up, which slows token guessing down as well.
	Source Rate
	// MaxKeys bounds each class's table; 0 means DefaultRateLimitKeys.
	// Buckets that are full again are dropped (they equal a new one); while
	// the table is still full, new keys share one bucket of the class.
	MaxKeys int
}

// DefaultRateLimitKeys is the default bound of each rate-limit table.
const DefaultRateLimitKeys = 65536

// Rate-limit classes, the label of corral_http_rate_limited_total.
const (
	classToken  = "token"
	classAgent  = "agent"
	classSource = "source"
)

// limiters holds the tables of the enabled classes (nil when disabled).
type limiters struct {
	token, agent, source *limiterSet
	refused              *prometheus.CounterVec
}

func newLimiters(cfg RateLimits, reg prometheus.Registerer) *limiters {
	max := cfg.MaxKeys
	if max <= 0 {
		max = DefaultRateLimitKeys
	}
	l := &limiters{
		token:  newLimiterSet(cfg.Token, max),
		agent:  newLimiterSet(cfg.Agent, max),
		source: newLimiterSet(cfg.Source, max),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corral_http_rate_limited_total",
			Help: "Requests refused with 429 rate_limited, by budget class (token, agent, source).",
		}, []string{"class"}),
	}
	for _, c := range []string{classToken, classAgent, classSource} {
		l.refused.WithLabelValues(c) // present at 0 from the start
	}
	reg.MustRegister(l.refused)
	return l
}

// limiterSet is one class's table of token buckets.
type limiterSet struct {
	limit rate.Limit
	burst int
	max   int

	mu        sync.Mutex
	m         map[string]*rate.Limiter
	overflow  *rate.Limiter // shared by new keys while the table is full
	lastSweep time.Time
}

// sweepEvery is how often a table drops its full buckets even when it is
// not full, so that memory follows the number of recent callers.
const sweepEvery = time.Minute

func newLimiterSet(r Rate, max int) *limiterSet {
	if r.PerSecond <= 0 {
		return nil
	}
	burst := max1(r.Burst)
	return &limiterSet{limit: rate.Limit(r.PerSecond), burst: burst, max: max,
		m: map[string]*rate.Limiter{}, overflow: rate.NewLimiter(rate.Limit(r.PerSecond), burst)}
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// get returns key's bucket, making it if needed.
func (l *limiterSet) get(key string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim, ok := l.m[key]; ok {
		return lim
	}
	full := len(l.m) >= l.max
	if since := now.Sub(l.lastSweep); since >= sweepEvery || since < 0 || (full && since >= time.Second) {
		l.sweep(now)
		full = len(l.m) >= l.max
	}
	if full {
		return l.overflow
	}
	lim := rate.NewLimiter(l.limit, l.burst)
	l.m[key] = lim
	return lim
}

// sweep drops the buckets that have refilled: a full bucket behaves like a
// new one, so forgetting it forgives nothing.
func (l *limiterSet) sweep(now time.Time) {
	l.lastSweep = now
	for k, lim := range l.m {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, k)
		}
	}
}

// size is the number of buckets held (tests).
func (l *limiterSet) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// take spends one request from lim; when the bucket is empty it returns
// false and how long until a request is allowed again.
func take(lim *rate.Limiter, now time.Time) (bool, time.Duration) {
	if lim.AllowN(now, 1) {
		return true, 0
	}
	return false, waitFor(lim, now)
}

// waitFor is how long until lim holds one request.
func waitFor(lim *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - lim.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / float64(lim.Limit()) * float64(time.Second))
}

// sourceKey is the bucket key of a request's client: its address as the
// connection shows it (never a header a client can forge), IPv6 by /64,
// since one host usually owns a whole /64.
func sourceKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() != nil {
		return ip.To4().String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// limitSource applies the source budget. It runs before authentication:
// requests outside /v1 (health, metrics) spend it at once; a /v1 request
// is refused while the budget is spent, and spends it only when it turns
// out to carry no valid token, so that authenticated callers sharing an
// address with a token guesser keep their own budgets.
func (s *Server) limitSource(next echo.HandlerFunc) echo.HandlerFunc {
	set := s.limits.source
	if set == nil {
		return next
	}
	return func(c echo.Context) error {
		now := s.now()
		lim := set.get(sourceKey(c.Request()), now)
		if !strings.HasPrefix(c.Request().URL.Path, "/v1/") {
			if ok, wait := take(lim, now); !ok {
				return s.rateLimited(c, classSource, wait)
			}
			return next(c)
		}
		if lim.TokensAt(now) < 1 {
			return s.rateLimited(c, classSource, waitFor(lim, now))
		}
		err := next(c)
		if principalOf(c).TokenID == "" {
			lim.AllowN(s.now(), 1) // spend one; the answer is the 401 already made
		}
		return err
	}
}

// limitToken applies the token and agent budgets, after authentication and
// before the audit log: a refused request costs no audit row, only a count
// in corral_http_rate_limited_total.
func (s *Server) limitToken(next echo.HandlerFunc) echo.HandlerFunc {
	if s.limits.token == nil && s.limits.agent == nil {
		return next
	}
	return func(c echo.Context) error {
		p := principalOf(c)
		set, class := s.limits.token, classToken
		if p.Role == types.RoleAgent {
			set, class = s.limits.agent, classAgent
		}
		if p.TokenID == "" || set == nil {
			return next(c)
		}
		now := s.now()
		if ok, wait := take(set.get(p.TokenID, now), now); !ok {
			return s.rateLimited(c, class, wait)
		}
		return next(c)
	}
}

// rateLimited counts a refusal and answers 429 rate_limited with
// Retry-After in whole seconds (at least 1).
func (s *Server) rateLimited(c echo.Context, class string, wait time.Duration) error {
	s.limits.refused.WithLabelValues(class).Inc()
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
	what := map[string]string{classToken: "token", classAgent: "agent token", classSource: "client address"}[class]
	return types.Errorf(types.CodeRateLimited, "too many requests for this %s; retry in %d s", what, secs).
		WithDetail("class", class).WithDetail("retry_after_seconds", secs)
}
