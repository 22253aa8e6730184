package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/labstack/echo/v4"
)

// observe counts every request by its route template, after the error
// handler has set the final status, and times it: long polls (the agents'
// watches, marked by holdFor) in their own histogram, so that a watch
// waiting 30 s for a change does not pass for a slow request.
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
		took := time.Since(start).Seconds()
		if long, _ := c.Get(longPollKey).(bool); long {
			s.metrics.longPolls.WithLabelValues(route).Observe(took)
		} else {
			s.metrics.latency.WithLabelValues(c.Request().Method, route).Observe(took)
		}
		return nil
	}
}

const resourceIDKey = "corral.resource_id"

// unaudited routes change only measurements, every few seconds per host;
// auditing them would bury the operators' calls.
var unaudited = map[string]bool{"/v1/hosts/:id/heartbeat": true, "/v1/hosts/:id/guests/console": true,
	"/v1/hosts/:id/guests/console/input": true}

// untransacted routes do slow work outside the database (an image upload
// streams gigabytes to disk; a power operation waits on a BMC) and must
// not hold a request transaction, which on SQLite is the only writer. They
// commit their own changes in short transactions and are audited after.
var untransacted = map[string]bool{"/v1/images/:id/file": true, "/v1/nodes/:id/power": true,
	"/v1/hosts/:id/guests/console/input": true} // an agent's long poll for console input

// setResource names the object a mutating call acted on, for the audit log.
func setResource(c echo.Context, id string) { c.Set(resourceIDKey, id) }

// secretRoutes answer with a credential that is shown only once and stored
// only as a hash, so their answers are never kept for replay. Host
// registration is idempotent by host name anyway.
var secretRoutes = map[string]bool{"/v1/tokens": true, "/v1/hosts/register": true}

// replayedHeaders are the answer headers an idempotent replay repeats.
var replayedHeaders = []string{"Location", "ETag"}

func fromJSONHeaders(s string) map[string]string {
	var h map[string]string
	_ = json.Unmarshal([]byte(s), &h) // corrald wrote it
	return h
}

// txRetries bounds how often a request runs again after its transaction
// lost to another one (a PostgreSQL deadlock or serialization failure).
const txRetries = 5

// transact runs every mutating call under /v1 as one unit of work: the
// handler's changes, the answer recorded for its Idempotency-Key and its
// audit entry commit in one transaction, and the answer leaves corrald
// only after that commit. A kill -9 at any instant therefore leaves either
// all of it or none of it: a retry with the same key finds the committed
// answer and replays it (Idempotent-Replayed: true), or finds nothing and
// runs. Two requests with the same key never both run: the second waits on
// the first's key row and then replays its answer.
//
// A refused call (status 400 and above) changes nothing: its transaction is
// rolled back, its key is not kept (a retry runs again), and it is audited
// through the refusal log, which aggregates floods.
func (s *Server) transact(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if !isMutation(req) {
			return next(c)
		}
		if untransacted[c.Path()] {
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			s.auditAfter(c)
			return nil
		}
		body, err := io.ReadAll(http.MaxBytesReader(nil, req.Body, s.cfg.MaxBodyBytes))
		if err != nil {
			c.Error(types.Errorf(types.CodeBodyTooLarge, "request body is over %d bytes", s.cfg.MaxBodyBytes))
			s.auditAfter(c)
			return nil
		}
		key := req.Header.Get("Idempotency-Key")
		if req.Method != http.MethodPost || secretRoutes[c.Path()] {
			key = ""
		}
		var hash string
		if key != "" {
			if len(key) > 255 {
				c.Error(types.FieldError("Idempotency-Key", "longer than 255 characters"))
				s.auditAfter(c)
				return nil
			}
			h := sha256.New()
			io.WriteString(h, req.Method+" "+req.URL.Path+"\n")
			h.Write(body)
			hash = hex.EncodeToString(h.Sum(nil))
		}
		res := c.Response()
		real := res.Writer
		defer func() { res.Writer = real; c.SetRequest(req) }()
		for attempt := 0; ; attempt++ {
			retry, err := s.attempt(c, next, req, real, body, key, hash)
			if retry && attempt < txRetries {
				time.Sleep(time.Duration(1+attempt) * time.Duration(rand.Int64N(int64(5*time.Millisecond))))
				continue
			}
			if err != nil {
				// Nothing was committed and nothing sent: answer the
				// error itself.
				res.Writer = real
				resetResponse(res)
				c.SetRequest(req)
				c.Error(err)
				s.auditAfter(c)
			}
			return nil
		}
	}
}

// attempt runs the handler once in a fresh transaction. It returns retry
// when the transaction lost to another and may run again, and an error
// when nothing was sent and the caller must answer with it.
func (s *Server) attempt(c echo.Context, next echo.HandlerFunc, req *http.Request, real http.ResponseWriter,
	body []byte, key, hash string) (retry bool, _ error) {
	res := c.Response()
	res.Writer = real
	resetResponse(res)
	c.SetRequest(req)
	ctx, rt, err := s.store.Begin(req.Context())
	if err != nil {
		return store.Retryable(err), storeUnavailable(err)
	}
	defer rt.Rollback()
	p := principalOf(c)
	if key != "" {
		rec, err := s.store.TakeIdempotencyKey(ctx, p.TokenID, key, hash)
		if err != nil {
			return store.Retryable(err), storeUnavailable(err)
		}
		if rec != nil {
			rt.Rollback()
			if rec.RequestHash != hash {
				return false, types.Errorf(types.CodeIdempotencyKeyReused,
					"Idempotency-Key %q was already used for a different request", key)
			}
			for k, v := range fromJSONHeaders(rec.Headers) {
				res.Header().Set(k, v)
			}
			res.Header().Set("Idempotent-Replayed", "true")
			c.Blob(rec.Status, rec.ContentType, []byte(rec.Body))
			return false, nil
		}
	}
	bw := newBufferedWriter(real.Header())
	res.Writer = bw
	r2 := req.WithContext(ctx)
	r2.Body = io.NopCloser(bytes.NewReader(body))
	c.SetRequest(r2)
	herr := next(c)
	if herr != nil && store.Retryable(herr) {
		return true, nil
	}
	if herr != nil {
		c.Error(herr)
	}
	status := res.Status
	if status >= http.StatusBadRequest {
		rt.Rollback()
		bw.flushTo(real, status)
		s.auditAfter(c)
		return false, nil
	}
	if key != "" {
		h := map[string]string{}
		for _, k := range replayedHeaders {
			if v := bw.Header().Get(k); v != "" {
				h[k] = v
			}
		}
		if err := s.store.CompleteIdempotencyKey(ctx, p.TokenID, key, status, bw.Header().Get(echo.HeaderContentType), h, bw.buf.Bytes()); err != nil {
			return store.Retryable(err), storeUnavailable(err)
		}
	}
	if !unaudited[c.Path()] {
		if err := s.store.AppendAudit(ctx, []types.AuditEntry{s.auditEntry(c, status)}); err != nil {
			return store.Retryable(err), storeUnavailable(err)
		}
	}
	if err := rt.Commit(); err != nil {
		return store.Retryable(err), storeUnavailable(err)
	}
	bw.flushTo(real, status)
	return false, nil
}

// storeUnavailable is the answer when the request's transaction could not
// be opened or committed: nothing happened, and the client may retry.
func storeUnavailable(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", errTxFailed, err)
}

var errTxFailed = errors.New("request transaction failed")

// auditEntry describes the call for the audit log.
func (s *Server) auditEntry(c echo.Context, status int) types.AuditEntry {
	p := principalOf(c)
	rid, _ := c.Get(resourceIDKey).(string)
	if rid == "" {
		rid = c.Param("id")
	}
	return types.AuditEntry{At: s.now(), TokenID: p.TokenID, Role: p.Role, Method: c.Request().Method,
		Path: c.Request().URL.Path, Status: status, ResourceID: rid,
		RequestID: c.Response().Header().Get(echo.HeaderXRequestID), Count: 1}
}

// auditAfter records a call that ran outside a request transaction: a
// refused one (through the refusal log, which aggregates floods) or one of
// the untransacted routes.
func (s *Server) auditAfter(c echo.Context) {
	if unaudited[c.Path()] {
		return
	}
	e := s.auditEntry(c, c.Response().Status)
	// The call has happened whether or not its client is still there:
	// record it with a context the client's disconnect does not cancel.
	ctx := context.WithoutCancel(store.Detach(c.Request().Context()))
	if e.Status >= http.StatusBadRequest {
		s.refusals.add(ctx, e)
		return
	}
	if err := s.store.AppendAudit(ctx, []types.AuditEntry{e}); err != nil {
		s.log.Error("write audit entry", "error", err, "method", e.Method, "path", e.Path)
	}
}

// resetResponse makes echo's response writable again for a new attempt.
func resetResponse(res *echo.Response) {
	res.Status, res.Size, res.Committed = http.StatusOK, 0, false
}

// bufferedWriter holds an answer until its transaction has committed.
type bufferedWriter struct {
	header http.Header
	status int
	buf    bytes.Buffer
}

func newBufferedWriter(base http.Header) *bufferedWriter {
	return &bufferedWriter{header: base.Clone()}
}

func (w *bufferedWriter) Header() http.Header         { return w.header }
func (w *bufferedWriter) WriteHeader(code int)        { w.status = code }
func (w *bufferedWriter) Write(b []byte) (int, error) { return w.buf.Write(b) }

// flushTo sends the held answer.
func (w *bufferedWriter) flushTo(real http.ResponseWriter, status int) {
	h := real.Header()
	for k := range h {
		if _, ok := w.header[k]; !ok {
			delete(h, k)
		}
	}
	for k, v := range w.header {
		h[k] = v
	}
	if status == 0 {
		status = http.StatusOK
	}
	real.WriteHeader(status)
	if w.buf.Len() > 0 {
		real.Write(w.buf.Bytes())
	}
}
