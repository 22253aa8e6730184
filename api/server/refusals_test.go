package server

import (
	"context"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
)

// TestRefusalsAggregated: a reader's flood of refused POSTs writes one
// audit row at once and one aggregate row per window, not a row per call;
// the counts add up to the calls; a change that succeeds is audited on its
// own row; nothing refused changed anything.
func TestRefusalsAggregated(t *testing.T) {
	e := newEnv(t)
	reader := e.token(types.RoleReader, "")
	tok, err := e.store.Authenticate(context.Background(), reader)
	if err != nil {
		t.Fatal(err)
	}
	before := e.counts()
	const flood = 150
	for i := 0; i < flood; i++ {
		if r := e.call(reader, "POST", "/v1/regions", types.RegionCreate{Name: "r"}); r.status != 403 {
			t.Fatalf("reader's create = %d %s, want 403", r.status, r.body)
		}
	}
	rows := func() []types.AuditEntry {
		l, err := e.store.ListAudit(context.Background(), store.ListOptions{Limit: 1000, Filters: map[string]string{"token": tok.ID}})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	if got := rows(); len(got) != 1 || got[0].Count != 1 || got[0].Status != 403 {
		t.Fatalf("audit rows during the flood = %+v, want the first refusal only", got)
	}
	// The window closes: the maintenance loop writes the aggregate.
	e.advance(refusalWindow + time.Second)
	e.srv.MaintainOnce(context.Background())
	got := rows()
	total := 0
	for _, r := range got {
		total += r.Count
	}
	if len(got) != 2 || total != flood {
		t.Errorf("audit rows after the window = %d with counts summing to %d, want 2 rows for %d calls", len(got), total, flood)
	}
	if after := e.counts(); after["regions"] != before["regions"] {
		t.Errorf("refused creates changed regions: %d -> %d", before["regions"], after["regions"])
	}
	// A success is audited on its own row, in the transaction of its change.
	var reg types.Region
	e.must(201, "POST", "/v1/regions", types.RegionCreate{Name: "dc-audit"}, &reg)
	l, err := e.store.ListAudit(context.Background(), store.ListOptions{Filters: map[string]string{"resource": reg.ID}})
	if err != nil || len(l.Items) != 1 || l.Items[0].Status != 201 || l.Items[0].Count != 1 {
		t.Errorf("audit of a create = %+v, %v; want one row", l.Items, err)
	}
}
