package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "corral_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"method", "route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "corral_http_request_duration_seconds", Help: "HTTP request latency by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"method", "route"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

// observe counts every request by its route template, after the error
// handler has set the final status.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		s.metrics.requests.WithLabelValues(c.Request().Method, route, strconv.Itoa(c.Response().Status)).Inc()
		s.metrics.latency.WithLabelValues(c.Request().Method, route).Observe(time.Since(start).Seconds())
		return nil
	}
}

const resourceIDKey = "corral.resource_id"

// unaudited routes change only measurements, every few seconds per host;
// auditing them would bury the operators' calls.
var unaudited = map[string]bool{"/v1/hosts/:id/heartbeat": true}

// setResource names the object a mutating call acted on, for the audit log.
func setResource(c echo.Context, id string) { c.Set(resourceIDKey, id) }

// audit records every mutating call under /v1 with its caller and final
// status, including refused ones.
func (s *Server) audit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !isMutation(c.Request()) || unaudited[c.Path()] {
			return next(c)
		}
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		p := principalOf(c)
		rid, _ := c.Get(resourceIDKey).(string)
		if rid == "" {
			rid = c.Param("id")
		}
		// The call has happened whether or not its client is still there:
		// record it with a context the client's disconnect does not cancel.
		ctx := context.WithoutCancel(c.Request().Context())
		entry := types.AuditEntry{At: s.now(), TokenID: p.TokenID, Role: p.Role, Method: c.Request().Method,
			Path: c.Request().URL.Path, Status: c.Response().Status, ResourceID: rid,
			RequestID: c.Response().Header().Get(echo.HeaderXRequestID)}
		if aerr := s.store.AppendAudit(ctx, []types.AuditEntry{entry}); aerr != nil {
			s.log.Error("write audit entry", "error", aerr, "method", entry.Method, "path", entry.Path)
		}
		return nil
	}
}

// captureWriter keeps a copy of the response body for idempotent replay.
type captureWriter struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (w *captureWriter) Write(b []byte) (int, error) {
	w.buf.Write(b)
	return w.ResponseWriter.Write(b)
}

// replayedHeaders are the answer headers an idempotent replay repeats.
var replayedHeaders = []string{"Location", "ETag"}

func fromJSONHeaders(s string) map[string]string {
	var h map[string]string
	_ = json.Unmarshal([]byte(s), &h) // corrald wrote it
	return h
}

// abandonedAfter is how long a key may stay reserved by a request that never
// finished (its corrald crashed) before a retry takes it over.
const abandonedAfter = time.Minute

// secretRoutes answer with a credential that is shown only once and stored
// only as a hash, so their answers are never kept for replay. Host
// registration is idempotent by host name anyway.
var secretRoutes = map[string]bool{"/v1/tokens": true, "/v1/hosts/register": true}

// idempotency makes a POST sent with an Idempotency-Key run once: a retry
// with the same key and body gets the first response again (with
// Idempotent-Replayed: true) and creates nothing. Keys are scoped to the
// calling token and kept for a day.
func (s *Server) idempotency(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key := c.Request().Header.Get("Idempotency-Key")
		if key == "" || c.Request().Method != http.MethodPost || secretRoutes[c.Path()] {
			return next(c)
		}
		if len(key) > 255 {
			return types.FieldError("Idempotency-Key", "longer than 255 characters")
		}
		body, err := io.ReadAll(http.MaxBytesReader(nil, c.Request().Body, s.cfg.MaxBodyBytes))
		if err != nil {
			return types.Errorf(types.CodeBodyTooLarge, "request body is over %d bytes", s.cfg.MaxBodyBytes)
		}
		c.Request().Body = io.NopCloser(bytes.NewReader(body))
		h := sha256.New()
		io.WriteString(h, c.Request().Method+" "+c.Request().URL.Path+"\n")
		h.Write(body)
		hash := hex.EncodeToString(h.Sum(nil))
		p := principalOf(c)
		ctx := c.Request().Context()
		rec, err := s.store.ReserveIdempotencyKey(ctx, p.TokenID, key, hash)
		if err != nil {
			return err
		}
		if rec != nil && rec.Status == 0 && s.now().Sub(time.UnixMicro(rec.CreatedAt)) > abandonedAfter {
			// The first request's corrald died before answering: take over.
			if err := s.store.ReleaseIdempotencyKey(ctx, p.TokenID, key); err != nil {
				return err
			}
			if rec, err = s.store.ReserveIdempotencyKey(ctx, p.TokenID, key, hash); err != nil {
				return err
			}
		}
		if rec != nil {
			switch {
			case rec.RequestHash != hash:
				return types.Errorf(types.CodeIdempotencyKeyReused,
					"Idempotency-Key %q was already used for a different request", key)
			case rec.Status == 0:
				c.Response().Header().Set("Retry-After", "1")
				return types.Errorf(types.CodeIdempotencyInProgress,
					"a request with Idempotency-Key %q is still running; retry shortly", key)
			}
			for k, v := range fromJSONHeaders(rec.Headers) {
				c.Response().Header().Set(k, v)
			}
			c.Response().Header().Set("Idempotent-Replayed", "true")
			return c.Blob(rec.Status, rec.ContentType, []byte(rec.Body))
		}
		cw := &captureWriter{ResponseWriter: c.Response().Writer}
		c.Response().Writer = cw
		if err := next(c); err != nil {
			c.Error(err)
		}
		c.Response().Writer = cw.ResponseWriter
		status := c.Response().Status
		// The handler's work is committed: record its outcome even if the
		// client has gone, or a retry would find the key held and, a minute
		// later, run the request a second time.
		ctx = context.WithoutCancel(ctx)
		// Conflicts and server errors may succeed later: forget the key so
		// that a retry runs again. Everything else is final and replayed.
		if status >= 500 || status == http.StatusConflict {
			err = s.store.ReleaseIdempotencyKey(ctx, p.TokenID, key)
		} else {
			h := map[string]string{}
			for _, k := range replayedHeaders {
				if v := c.Response().Header().Get(k); v != "" {
					h[k] = v
				}
			}
			err = s.store.CompleteIdempotencyKey(ctx, p.TokenID, key, status,
				c.Response().Header().Get(echo.HeaderContentType), h, cw.buf.Bytes())
		}
		if err != nil {
			s.log.Error("record idempotency key", "key", key, "error", err)
		}
		return nil
	}
}
