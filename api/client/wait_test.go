package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// fakeServers answers GET /v1/servers/web-1 (and /v1/nodes/n1) with the
// next of a list of answers, repeating the last one.
type fakeServers struct {
	mu      sync.Mutex
	answers []any // types.Server, or an int status
	node    *types.Node
	nodeErr int
	reads   int
}

func (f *fakeServers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/v1/nodes/") {
		if f.nodeErr != 0 {
			w.WriteHeader(f.nodeErr)
			json.NewEncoder(w).Encode(types.ErrorBody{Error: &types.Error{Code: types.CodeForbidden, Message: "no"}})
			return
		}
		json.NewEncoder(w).Encode(f.node)
		return
	}
	a := f.answers[min(f.reads, len(f.answers)-1)]
	f.reads++
	switch v := a.(type) {
	case int:
		code := types.CodeNotFound
		if v >= 500 {
			code = types.CodeUnavailable
		}
		w.WriteHeader(v)
		json.NewEncoder(w).Encode(types.ErrorBody{Error: &types.Error{Code: code, Message: "x"}})
	default:
		json.NewEncoder(w).Encode(v)
	}
}

func srv(state, desired string) types.Server {
	return types.Server{Meta: types.Meta{ID: "srv-1"}, Name: "web-1", Kind: types.KindVM, State: state, DesiredState: desired}
}

func TestServersWait(t *testing.T) {
	failed := srv(types.ServerError, "active")
	failed.Fault = "define domain web-1: boot image unreadable"
	bm := srv(types.ServerBuilding, "active")
	bm.Kind, bm.NodeID = types.KindBaremetal, "n1"
	tests := []struct {
		name      string
		answers   []any
		node      *types.Node
		nodeErr   int
		until     Until
		wantState string
		wantErr   string // in the error text; "" means success
		wantSeen  []string
	}{
		{name: "active", answers: []any{srv("scheduled", "active"), srv("building", "active"), srv("building", "active"), srv("active", "active")},
			until: UntilActive, wantState: "active", wantSeen: []string{"scheduled", "building", "active"}},
		{name: "error with the reason", answers: []any{srv("building", "active"), failed}, until: UntilActive,
			wantErr: "server web-1 is error: define domain web-1: boot image unreadable", wantSeen: []string{"building", "error"}},
		{name: "stopped after a 503", answers: []any{srv("active", "stopped"), 503, srv("stopped", "stopped")}, until: UntilStopped,
			wantState: "stopped", wantSeen: []string{"active", "(unavailable)", "stopped"}},
		{name: "gone", answers: []any{srv("deleting", "active"), 404}, until: UntilGone, wantSeen: []string{"deleting", "gone"}},
		{name: "vanished while awaited active", answers: []any{srv("building", "active"), 404}, until: UntilActive,
			wantErr: "deleted while awaited active", wantSeen: []string{"building", "gone"}},
		{name: "bare-metal node error", answers: []any{bm}, node: &types.Node{Name: "bm-7", State: types.NodeError, LastError: "deploy: BMC timeout"},
			until: UntilActive, wantErr: "node bm-7: deploy: BMC timeout", wantSeen: []string{"building/error"}},
		{name: "node unreadable: the server alone says", answers: []any{bm, srv("active", "active")}, nodeErr: 403,
			until: UntilActive, wantState: "active", wantSeen: []string{"building", "active"}},
		{name: "timeout", answers: []any{srv("building", "active")}, until: UntilActive, wantErr: "not active after", wantSeen: []string{"building"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServers{answers: tt.answers, node: tt.node, nodeErr: tt.nodeErr}
			hs := httptest.NewServer(f)
			defer hs.Close()
			c := New(hs.URL, "tok", nil)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var seen []string
			s, err := c.Servers().Wait(ctx, "web-1", tt.until, WaitOptions{Interval: 10 * time.Millisecond, Progress: func(p Progress) {
				switch {
				case p.Err != nil:
					seen = append(seen, "(unavailable)")
				case p.Gone:
					seen = append(seen, "gone")
				case p.Node != nil:
					seen = append(seen, p.Server.State+"/"+p.Node.State)
				default:
					seen = append(seen, p.Server.State)
				}
			}})
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Wait error = %v, want one with %q", err, tt.wantErr)
			}
			var we *WaitError
			if strings.Contains(tt.name, "error") && !errors.As(err, &we) {
				t.Errorf("error %T is not a *WaitError", err)
			}
			if s.State != tt.wantState && tt.wantErr == "" {
				t.Errorf("state = %q, want %q", s.State, tt.wantState)
			}
			if diff := cmp.Diff(tt.wantSeen, seen); diff != "" {
				t.Errorf("progress (-want +got):\n%s", diff)
			}
		})
	}
}
