package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
)

// api makes corralctl's calls through api/client, retrying those that are
// safe to repeat.
type api struct {
	// c makes every call but uploads; its HTTP client has the --timeout limit.
	c *client.Client
	// upload streams image data; only the wait for the answer is bounded.
	upload *client.Client
	// attempts is how many times a retryable call is tried in all.
	attempts int
	// backoff is the pause before the second attempt; it triples each time.
	backoff time.Duration
}

// newAPI returns an api for the settings, each request bounded by timeout
// (0 means no limit).
func newAPI(s settings, timeout time.Duration) *api {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	c := client.New(s.Endpoint, s.Token, &http.Client{Transport: tr, Timeout: timeout})
	c.UserAgent = "corralctl"
	upTr := tr.Clone()
	upTr.ResponseHeaderTimeout = timeout
	up := client.New(s.Endpoint, s.Token, &http.Client{Transport: upTr})
	up.UserAgent = "corralctl"
	return &api{c: c, upload: up, attempts: 3, backoff: 300 * time.Millisecond}
}

// retryable reports whether a failed call may succeed when repeated: the
// request never got an answer, or corrald or a proxy in front of it was
// unavailable, or an earlier attempt with the same Idempotency-Key is still
// running.
func retryable(err error) bool {
	var ce *client.Error
	if errors.As(err, &ce) {
		switch ce.Status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return ce.Body != nil && ce.Body.Code == types.CodeIdempotencyInProgress
	}
	var ue *url.Error
	return errors.As(err, &ue) && !errors.Is(err, context.Canceled)
}

// retry runs call until it succeeds, fails for good or has been tried
// a.attempts times. Only calls that are safe to repeat may use it: reads,
// and creations that carry an Idempotency-Key.
func (a *api) retry(ctx context.Context, call func() error) error {
	pause := a.backoff
	for attempt := 1; ; attempt++ {
		err := call()
		if err == nil || attempt >= a.attempts || !retryable(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause *= 3
	}
}

// get fetches one object of col as the API's JSON.
func (a *api) get(ctx context.Context, col client.Collection, id string) (json.RawMessage, error) {
	var out json.RawMessage
	err := a.retry(ctx, func() error {
		var err error
		out, err = col.GetJSON(ctx, id)
		return err
	})
	return out, err
}

// list fetches one page of col, or with all every page, and returns the
// items and the cursor of the next page ("" after the last one).
func (a *api) list(ctx context.Context, col client.Collection, q url.Values, all bool) ([]json.RawMessage, string, error) {
	q2 := url.Values{}
	for k, v := range q {
		q2[k] = v
	}
	var items []json.RawMessage
	for {
		var page types.List[json.RawMessage]
		err := a.retry(ctx, func() error {
			var err error
			page, err = col.ListJSON(ctx, q2)
			return err
		})
		if err != nil {
			return items, "", err
		}
		items = append(items, page.Items...)
		if !all || page.NextCursor == "" {
			return items, page.NextCursor, nil
		}
		q2.Set("cursor", page.NextCursor)
	}
}

// create posts body to col. With an idempotency key the call is retried,
// and corrald answers a repeat with the first result.
func (a *api) create(ctx context.Context, col client.Collection, body any, key string) (json.RawMessage, error) {
	var out json.RawMessage
	call := func() error {
		var err error
		out, err = col.CreateJSON(ctx, body, key)
		return err
	}
	if key == "" {
		return out, call()
	}
	return out, a.retry(ctx, call)
}

// update patches object id of col, at revision ifMatch when it is not 0.
// It is not retried: after a lost answer the revision has moved on.
func (a *api) update(ctx context.Context, col client.Collection, id string, body any, ifMatch int64) (json.RawMessage, error) {
	return col.UpdateJSON(ctx, id, body, ifMatch)
}

// delete deletes object id of col, at revision ifMatch when it is not 0,
// and returns the answer's body (the object while its deletion goes on,
// nil once gone). It is not retried: a repeat after a lost answer would
// report not_found.
func (a *api) delete(ctx context.Context, col client.Collection, id string, ifMatch int64) (json.RawMessage, error) {
	return col.DeleteJSON(ctx, id, ifMatch)
}

// uploadImage streams the file at path as the data of image id (an ID or
// name); the file is never read into memory whole.
func (a *api) uploadImage(ctx context.Context, id string, f *os.File) (json.RawMessage, error) {
	out, err := a.upload.Images().UploadJSON(ctx, id, f)
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", f.Name(), err)
	}
	return out, nil
}

// newIdempotencyKey returns a random key for one invocation.
func newIdempotencyKey() string {
	return "corralctl-" + rand.Text()
}
