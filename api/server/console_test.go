package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/testenv"
	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// tailOf builds a kept console from text that starts at byte start of
// the server's history.
func tailOf(start int64, text string) store.ConsoleTail {
	return store.ConsoleTail{Data: text, EndSeq: start + int64(len(text))}
}

// TestConsoleView: an answer holds whole lines only, the cursor it gives
// points past them, tail cuts from the front and says so, a cursor cuts
// from the back, and output corrald no longer keeps is reported truncated.
func TestConsoleView(t *testing.T) {
	tests := []struct {
		name  string
		t     store.ConsoleTail
		after int64
		limit int
		want  types.Console
	}{
		{"empty", store.ConsoleTail{}, -1, 100, types.Console{Lines: []string{}}},
		{"whole lines and a partial one", tailOf(0, "boot\r\nGUEST-READY vm1\n/ # "), -1, 100,
			types.Console{Lines: []string{"boot", "GUEST-READY vm1"}, Partial: "/ # ", Next: 22}},
		{"tail cuts the oldest lines", tailOf(0, "a\nb\nc\n"), -1, 2,
			types.Console{Lines: []string{"b", "c"}, Truncated: true, Next: 6}},
		{"output no longer kept", tailOf(1000, "x\n"), -1, 100,
			types.Console{Lines: []string{"x"}, Truncated: true, Next: 1002}},
		{"after a cursor", tailOf(0, "a\nb\nc\n"), 2, 100, types.Console{Lines: []string{"b", "c"}, Next: 6}},
		{"after a cursor, limited: the first lines, cursor after them", tailOf(0, "a\nb\nc\nd"), 2, 1,
			types.Console{Lines: []string{"b"}, Next: 4}},
		{"cursor at the end: nothing new", tailOf(0, "a\nb"), 2, 100, types.Console{Lines: []string{}, Partial: "b", Next: 2}},
		{"cursor before what is kept", tailOf(100, "y\n"), 50, 100,
			types.Console{Lines: []string{"y"}, Truncated: true, Next: 102}},
		{"cursor past the end (another history)", tailOf(0, "z\n"), 500, 100, types.Console{Lines: []string{"z"}, Next: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, consoleView(tc.t, tc.after, tc.limit)); d != "" {
				t.Errorf("consoleView (-want +got):\n%s", d)
			}
		})
	}
}

// TestAppendChunk: a chunk sent twice is kept once, an overlap keeps only
// what is new, skipped output is marked, a log that restarted starts on a
// new line, bytes the API never returns are cleaned, and the kept tail is
// bounded and cut at a line start.
func TestAppendChunk(t *testing.T) {
	chunk := func(off int64, data string) types.ConsoleChunk {
		return types.ConsoleChunk{ServerID: "s", Offset: off, Data: []byte(data)}
	}
	t0 := store.ConsoleTail{}
	t1, ok := store.AppendChunk(t0, chunk(0, "hello\nwor"), 64)
	if !ok || t1.Data != "hello\nwor" || t1.EndSeq != 9 || t1.SrcOffset != 9 {
		t.Fatalf("first chunk: %+v %v", t1, ok)
	}
	if again, ok := store.AppendChunk(t1, chunk(0, "hello\nwor"), 64); ok || again != t1 {
		t.Errorf("the same chunk again changed the tail: %+v", again)
	}
	t2, _ := store.AppendChunk(t1, chunk(6, "world\n"), 64)
	if t2.Data != "hello\nworld\n" || t2.SrcOffset != 12 || t2.EndSeq != 12 {
		t.Errorf("overlap: %+v", t2)
	}
	gap, _ := store.AppendChunk(t2, chunk(20, "late\n"), 200)
	if !strings.HasSuffix(gap.Data, "[corral: 8 bytes of console output were not kept]\nlate\n") || gap.SrcOffset != 25 {
		t.Errorf("gap: %q offset %d", gap.Data, gap.SrcOffset)
	}
	reset, _ := store.AppendChunk(t1, types.ConsoleChunk{ServerID: "s", Reset: true, Data: []byte("rebooted\n")}, 64)
	if reset.Data != "hello\nwor\nrebooted\n" || reset.SrcOffset != 9 {
		t.Errorf("reset: %q offset %d", reset.Data, reset.SrcOffset)
	}
	dirty, _ := store.AppendChunk(t0, chunk(0, "a\x00b\xffc\n"), 64)
	if dirty.Data != "ab\uFFFDc\n" {
		t.Errorf("cleaning: %q", dirty.Data)
	}
	// Bounded: 1,000 lines into 64 bytes keep the newest whole lines.
	big := store.ConsoleTail{}
	var off int64
	for i := range 1000 {
		line := fmt.Sprintf("line %04d\n", i)
		big, _ = store.AppendChunk(big, chunk(off, line), 64)
		off += int64(len(line))
	}
	if len(big.Data) > 64 || !strings.HasPrefix(big.Data, "line ") || !strings.HasSuffix(big.Data, "line 0999\n") || big.EndSeq != off {
		t.Errorf("bounded tail: %d bytes %q, end %d (want ≤ 64 bytes of whole lines, end %d)", len(big.Data), big.Data, big.EndSeq, off)
	}
}

// consoleWorld is a VM placed on an agent's host.
type consoleWorld struct {
	*env
	host   types.Host
	agent  string
	server types.Server
}

func newConsoleWorld(t *testing.T) *consoleWorld { return newConsoleWorldOn(t, newEnv(t)) }

func newConsoleWorldOn(t *testing.T, e *env) *consoleWorld {
	c := e.catalogue()
	e.must(200, "PATCH", "/v1/hosts/"+c.host.ID, types.HostUpdate{State: ptr(types.HostMaintenance)}, nil)
	w := &consoleWorld{env: e}
	w.host, w.agent = e.agentOf("hv9")
	e.must(201, "POST", "/v1/servers", c.server("vm1"), &w.server)
	if w.server.HostID != w.host.ID {
		t.Fatalf("vm1 on %s, want %s", w.server.HostID, w.host.ID)
	}
	return w
}

func (w *consoleWorld) upload(token string, chunks ...types.ConsoleChunk) resp {
	w.t.Helper()
	return w.call(token, "POST", "/v1/hosts/"+w.host.ID+"/guests/console", types.ConsoleUpload{Chunks: chunks})
}

func (w *consoleWorld) console(token, query string) (types.Console, resp) {
	w.t.Helper()
	r := w.call(token, "GET", "/v1/servers/"+w.server.ID+"/console"+query, nil)
	var out types.Console
	if r.status == 200 {
		r.decode(w.t, &out)
	}
	return out, r
}

// TestConsoleAPI: the host's agent uploads console output, the server's
// project reads its tail and follows it (a waiting follow wakes at the
// upload), what corrald keeps is bounded, and the console survives a
// restart of corrald (a second API on the same database).
func TestConsoleAPI(t *testing.T) { testConsoleAPI(t, newConsoleWorld(t)) }

// TestConsoleAPIPostgres is the same on PostgreSQL.
func TestConsoleAPIPostgres(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{PostgresDSN: testenv.PostgresDatabase(t, "corral_console_api")})
	if err != nil {
		t.Fatal(err)
	}
	testConsoleAPI(t, newConsoleWorldOn(t, newEnvStore(t, st, "")))
}

func testConsoleAPI(t *testing.T, w *consoleWorld) {
	member := w.token(types.RoleMember, w.server.ProjectID)

	got, r := w.console(member, "")
	if r.status != 200 || len(got.Lines) != 0 || got.Truncated || got.Next != 0 {
		t.Fatalf("console before any output: %d %s", r.status, r.body)
	}
	if r := w.upload(w.agent, types.ConsoleChunk{ServerID: w.server.ID, Data: []byte("booting\r\nGUEST-READY vm1 addr=10.0.0.5/24\n/ # ")}); r.status != 200 {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	got, _ = w.console(member, "?tail=10")
	if d := cmp.Diff([]string{"booting", "GUEST-READY vm1 addr=10.0.0.5/24"}, got.Lines); d != "" || got.Partial != "/ # " || got.UpdatedAt == nil {
		t.Errorf("tail (-want +got):\n%s partial %q", d, got.Partial)
	}

	// Follow: nothing new answers empty after wait, with the same cursor.
	start := time.Now()
	idle, r := w.console(member, fmt.Sprintf("?after=%d&follow=true&wait=300ms", got.Next))
	if r.status != 200 || len(idle.Lines) != 0 || idle.Next != got.Next || time.Since(start) < 300*time.Millisecond {
		t.Errorf("idle follow: %d %s after %s", r.status, r.body, time.Since(start))
	}
	// A waiting follow wakes when the agent uploads.
	woke := make(chan types.Console)
	go func() {
		c, _ := w.console(member, fmt.Sprintf("?after=%d&follow=true&wait=20s", got.Next))
		woke <- c
	}()
	time.Sleep(100 * time.Millisecond) // let the follow start waiting; it must answer either way
	start = time.Now()
	w.upload(w.agent, types.ConsoleChunk{ServerID: w.server.ID, Offset: 46, Data: []byte("ls\nbin  etc\n")})
	select {
	case c := <-woke:
		if d := cmp.Diff([]string{"/ # ls", "bin  etc"}, c.Lines); d != "" || time.Since(start) > 5*time.Second {
			t.Errorf("woken follow (-want +got):\n%s after %s", d, time.Since(start))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the follow did not wake at the upload")
	}

	// Finished follows leave nothing waiting behind (a follow of a server
	// that is gone would otherwise hold its key for ever).
	if n := w.srv.consoles.size(); n != 0 {
		t.Errorf("%d servers still have console followers after every follow ended", n)
	}

	// Bounded: 200 KiB of output keep at most types.ConsoleKeep bytes.
	off := int64(58)
	for i := range 20 {
		var b strings.Builder
		for j := range 100 {
			fmt.Fprintf(&b, "chunk %02d line %03d %s\n", i, j, strings.Repeat("x", 80))
		}
		if r := w.upload(w.agent, types.ConsoleChunk{ServerID: w.server.ID, Offset: off, Data: []byte(b.String())}); r.status != 200 {
			t.Fatalf("upload %d: %d %s", i, r.status, r.body)
		}
		off += int64(b.Len())
	}
	kept, ok, err := w.store.Console(t.Context(), w.server.ID)
	if err != nil || !ok || len(kept.Data) > types.ConsoleKeep || len(kept.Data) < types.ConsoleKeep-200 {
		t.Errorf("kept %d bytes (ok %v, err %v), want at most and about %d", len(kept.Data), ok, err, types.ConsoleKeep)
	}
	all, _ := w.console(member, "?tail=2000")
	if !all.Truncated || all.Lines[len(all.Lines)-1] != "chunk 19 line 099 "+strings.Repeat("x", 80) || !strings.HasPrefix(all.Lines[0], "chunk ") {
		t.Errorf("bounded tail: truncated %v, %d lines, first %q", all.Truncated, len(all.Lines), all.Lines[0])
	}
	// An old cursor gets what is kept, marked truncated.
	old, _ := w.console(member, "?after=0&tail=5")
	if !old.Truncated || len(old.Lines) != 5 || !strings.HasPrefix(old.Lines[0], "chunk ") {
		t.Errorf("old cursor: %+v", old)
	}

	// A second corrald on the same database serves the same console.
	e2 := newEnvStore(t, w.store, w.admin)
	r2 := e2.call(member, "GET", "/v1/servers/"+w.server.ID+"/console?tail=2000", nil)
	var again types.Console
	r2.decode(t, &again)
	if d := cmp.Diff(all.Lines, again.Lines); r2.status != 200 || d != "" {
		t.Errorf("after a restart: %d, diff %s", r2.status, d)
	}

	// A deleted server's console is purged by the maintenance loop.
	if r := w.call(w.admin, "DELETE", "/v1/servers/"+w.server.ID, nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	w.srv.MaintainOnce(context.Background())
	if _, ok, err := w.store.Console(context.Background(), w.server.ID); ok || err != nil {
		t.Errorf("the deleted server's console is still kept (err %v)", err)
	}
}

// TestConsoleChecks: uploads only for the agent's own host and its own
// servers, bounded chunks, strict queries, and bare metal answered with
// console_unavailable rather than an error.
func TestConsoleChecks(t *testing.T) {
	w := newConsoleWorld(t)
	other, otherAgent := w.agentOf("hv8")
	// Another host's agent may not upload for this host.
	if r := w.upload(otherAgent, types.ConsoleChunk{ServerID: w.server.ID, Data: []byte("x\n")}); r.status != 403 {
		t.Errorf("another agent's upload: %d %s", r.status, r.body)
	}
	// A server not on the uploading host is skipped and named.
	r := w.call(otherAgent, "POST", "/v1/hosts/"+other.ID+"/guests/console",
		types.ConsoleUpload{Chunks: []types.ConsoleChunk{{ServerID: w.server.ID, Data: []byte("forged\n")}}})
	if r.status != 200 || !strings.Contains(string(r.body), w.server.ID) {
		t.Errorf("upload for a server on another host: %d %s", r.status, r.body)
	}
	if got, _ := w.console(w.admin, ""); len(got.Lines) != 0 {
		t.Errorf("a forged upload was kept: %v", got.Lines)
	}
	for _, tc := range []struct {
		name  string
		chunk types.ConsoleChunk
		field string
	}{
		{"no server", types.ConsoleChunk{Data: []byte("x")}, "chunks[0].server_id"},
		{"negative offset", types.ConsoleChunk{ServerID: w.server.ID, Offset: -1}, "chunks[0].offset"},
		{"chunk too large", types.ConsoleChunk{ServerID: w.server.ID, Data: make([]byte, types.MaxConsoleChunk+1)}, "chunks[0].data"},
	} {
		r := w.upload(w.agent, tc.chunk)
		if r.status != 400 || r.apiErr(t).Details["field"] != tc.field {
			t.Errorf("%s: %d %s, want 400 naming %s", tc.name, r.status, r.body, tc.field)
		}
	}
	for q, field := range map[string]string{
		"?tail=0": "tail", "?tail=x": "tail", "?tail=2001": "tail", "?after=-1": "after", "?follow=true": "after",
		"?after=0&follow=maybe": "follow", "?after=0&follow=true&wait=1h": "wait", "?wait=1s": "wait", "?lines=3": "lines",
		"?tail=1&tail=2": "tail",
	} {
		if _, r := w.console(w.admin, q); r.status != 400 || r.apiErr(t).Details["field"] != field {
			t.Errorf("GET console%s: %d %s, want 400 naming %s", q, r.status, r.body, field)
		}
	}
}

// TestConsoleBaremetal: a bare-metal server's console is the node's, not
// served by the API: 409 console_unavailable with the reason.
func TestConsoleBaremetal(t *testing.T) {
	ne := newNodeEnv(t)
	ne.available("bm01", 9641)
	var srv types.Server
	ne.must(201, "POST", "/v1/servers", types.ServerCreate{Name: "m1", Kind: types.KindBaremetal, Project: "p", Flavor: "metal", Image: "os"}, &srv)
	r := ne.call(ne.admin, "GET", "/v1/servers/"+srv.ID+"/console", nil)
	if r.status != 409 || r.apiErr(t).Code != types.CodeConsoleUnavailable || r.apiErr(t).Details["reason"] != "baremetal" {
		t.Errorf("bare-metal console: %d %s, want 409 console_unavailable", r.status, r.body)
	}
}

// TestConsoleInput: input typed through the API waits, bounded, for the
// host's agent, whose long poll wakes at once and takes it (once); only a
// running VM takes input; stale input is never typed late.
func TestConsoleInput(t *testing.T) {
	w := newConsoleWorld(t)
	member := w.token(types.RoleMember, w.server.ProjectID)
	send := func(data string) resp {
		t.Helper()
		return w.call(member, "POST", "/v1/servers/"+w.server.ID+"/console/input", types.ConsoleInput{Data: data})
	}
	take := func(wait string) (types.ConsoleInputs, resp) {
		t.Helper()
		r := w.call(w.agent, "POST", "/v1/hosts/"+w.host.ID+"/guests/console/input?wait="+wait, map[string]any{})
		var out types.ConsoleInputs
		if r.status == 200 {
			r.decode(t, &out)
		}
		return out, r
	}
	if r := send("ls\n"); r.status != 409 || r.apiErr(t).Code != types.CodeConflict {
		t.Errorf("input to a server not yet active: %d %s", r.status, r.body)
	}
	w.report(w.agent, w.host.ID, types.GuestStatus{ServerID: w.server.ID, State: types.GuestActive, Observed: types.GuestObserved{DomainID: 3}})

	// A waiting agent wakes at the input.
	got := make(chan types.ConsoleInputs)
	go func() { in, _ := take("20s"); got <- in }()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if r := send("uptime\n"); r.status != 202 {
		t.Fatalf("input: %d %s", r.status, r.body)
	}
	select {
	case in := <-got:
		want := []types.ConsoleInputFor{{ServerID: w.server.ID, Data: "uptime\n"}}
		if d := cmp.Diff(want, in.Inputs); d != "" || time.Since(start) > 5*time.Second {
			t.Errorf("taken (-want +got):\n%s after %s", d, time.Since(start))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the agent's wait did not wake at the input")
	}
	if in, r := take("0s"); r.status != 200 || len(in.Inputs) != 0 {
		t.Errorf("input taken twice: %d %s", r.status, r.body)
	}
	// Order kept; the queue is bounded.
	for i := range types.MaxConsoleInputQueue {
		if r := send(fmt.Sprintf("%d\n", i)); r.status != 202 {
			t.Fatalf("input %d: %d %s", i, r.status, r.body)
		}
	}
	if r := send("one too many\n"); r.status != 409 || r.apiErr(t).Details["limit"] == nil {
		t.Errorf("input over the queue's bound: %d %s", r.status, r.body)
	}
	in, _ := take("0s")
	if len(in.Inputs) != types.MaxConsoleInputQueue || in.Inputs[0].Data != "0\n" || in.Inputs[63].Data != "63\n" {
		t.Errorf("took %d inputs, first %+v", len(in.Inputs), in.Inputs[:1])
	}
	// Input older than a minute is dropped.
	send("stale\n")
	w.advance(2 * time.Minute)
	if in, _ := take("0s"); len(in.Inputs) != 0 {
		t.Errorf("stale input taken: %+v", in.Inputs)
	}
	for _, tc := range []struct {
		name, data, field string
	}{{"empty", "", "data"}, {"too long", strings.Repeat("x", types.MaxConsoleInput+1), "data"}} {
		if r := send(tc.data); r.status != 400 || r.apiErr(t).Details["field"] != tc.field {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
	// Another host's agent may not take this host's input; readers may not type.
	_, other := w.agentOf("hv8")
	if r := w.call(other, "POST", "/v1/hosts/"+w.host.ID+"/guests/console/input?wait=0s", map[string]any{}); r.status != 403 {
		t.Errorf("another agent's take: %d %s", r.status, r.body)
	}
	reader := w.token(types.RoleReader, w.server.ProjectID)
	if r := w.call(reader, "POST", "/v1/servers/"+w.server.ID+"/console/input", types.ConsoleInput{Data: "x"}); r.status != 403 {
		t.Errorf("a reader's input: %d %s", r.status, r.body)
	}
	if n := w.srv.consoles.size(); n != 0 {
		t.Errorf("%d waits left behind", n)
	}
}
