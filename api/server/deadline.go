package server

import (
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// Timeouts are the connection deadlines of the http.Server that serves the
// API (corrald sets ReadTimeout and WriteTimeout from them). The server
// needs them to let the few requests that legitimately outlast them (long
// polls, image transfers) extend their own connection's deadlines. Zero
// means the server has no such deadline, and nothing is extended.
type Timeouts struct {
	// Read bounds reading a whole request, body included.
	Read time.Duration
	// Write bounds the time from the end of a request's headers to the
	// end of its answer.
	Write time.Duration
}

// longPollMargin is added to a long poll's wait for its deadlines: the
// time to read its state and write the answer.
const longPollMargin = 15 * time.Second

// transferStep is how many bytes of an image transfer buy another Read
// (upload) or Write (download) timeout: a client slower than transferStep
// per timeout is cut off.
const transferStep = 1 << 20

// holdFor extends the read and write deadlines of c's connection to d from
// now (never shortening the configured ones), for a long poll that waits up
// to d. Without the read extension, the server's background read would hit
// ReadTimeout and cancel the request's context mid-wait.
//
// It also marks the request a long poll, which observe times in its own
// histogram: a watch that waits 30 s is no slow request.
func (s *Server) holdFor(c echo.Context, d time.Duration) {
	c.Set(longPollKey, true)
	t := s.cfg.Timeouts
	if t.Read <= 0 && t.Write <= 0 {
		return
	}
	rc := http.NewResponseController(c.Response())
	if t.Read > 0 {
		_ = rc.SetReadDeadline(time.Now().Add(max(d, t.Read))) // not supported by test recorders: nothing to extend
	}
	if t.Write > 0 {
		_ = rc.SetWriteDeadline(time.Now().Add(max(d, t.Write)))
	}
}

// transferDeadlines moves a connection's deadlines forward while an image
// transfer makes progress: each transferStep bytes buy another Read and
// Write timeout. An image upload or download may take as long as it keeps
// moving; a trickling one is cut off. Both deadlines move in both
// directions: an upload answers once its body is in, and a download would
// otherwise have its request cancelled by the server's background read.
type transferDeadlines struct {
	rc *http.ResponseController
	t  Timeouts
	n  int
}

func (s *Server) transferDeadlines(c echo.Context) *transferDeadlines {
	if s.cfg.Timeouts.Read <= 0 && s.cfg.Timeouts.Write <= 0 {
		return nil
	}
	d := &transferDeadlines{rc: http.NewResponseController(c.Response()), t: s.cfg.Timeouts}
	d.extend()
	return d
}

func (d *transferDeadlines) extend() {
	now := time.Now()
	if d.t.Read > 0 {
		_ = d.rc.SetReadDeadline(now.Add(d.t.Read))
	}
	if d.t.Write > 0 {
		_ = d.rc.SetWriteDeadline(now.Add(d.t.Write))
	}
}

func (d *transferDeadlines) moved(n int) {
	if d.n += n; d.n >= transferStep {
		d.n = 0
		d.extend()
	}
}

// uploadBody is the request body of an image upload.
func (s *Server) uploadBody(c echo.Context) io.Reader {
	d := s.transferDeadlines(c)
	if d == nil {
		return c.Request().Body
	}
	return &progressReader{r: c.Request().Body, d: d}
}

type progressReader struct {
	r io.Reader
	d *transferDeadlines
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.d.moved(n)
	return n, err
}

// downloadWriter is the answer writer of an image download.
func (s *Server) downloadWriter(c echo.Context) http.ResponseWriter {
	d := s.transferDeadlines(c)
	if d == nil {
		return c.Response()
	}
	return &progressWriter{ResponseWriter: c.Response(), d: d}
}

type progressWriter struct {
	http.ResponseWriter
	d *transferDeadlines
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.ResponseWriter.Write(b)
	p.d.moved(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }
