package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/server"
	"github.com/corral-cloud/corral/api/store"
	"github.com/corral-cloud/corral/api/types"
	"github.com/google/go-cmp/cmp"
)

// dirConsoles keeps console logs as dir/ID.log, and appends what is typed
// into a console to dir/ID.in.
type dirConsoles string

func (d dirConsoles) ConsoleLog(id string) string { return filepath.Join(string(d), id+".log") }

func (d dirConsoles) WriteConsole(_ context.Context, id string, data []byte) error {
	f, err := os.OpenFile(filepath.Join(string(d), id+".in"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(data)
	return err
}

var (
	_ ConsoleSource = dirConsoles("")
	_ ConsoleWriter = dirConsoles("")
)

// TestConsoleShipping runs the agent against a real in-process corrald: a
// guest's console log reaches GET /v1/servers/{id}/console as it grows,
// an agent restart sends nothing twice, and a log that starts over (a
// rotation) is followed from its new start.
func TestConsoleShipping(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(t.Context(), store.Config{SQLitePath: filepath.Join(dir, "c.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := server.New(server.Config{Store: st, ImageDir: filepath.Join(dir, "images"), WatchRecheck: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	_, admin, err := st.CreateToken(t.Context(), types.Token{Name: "admin", Role: types.RoleAdmin}, nil)
	if err != nil {
		t.Fatal(err)
	}
	api := client.New(hs.URL, admin, nil)
	ctx := t.Context()
	mustDo := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustDo(client.Create[types.Region](ctx, api, "/v1/regions", types.RegionCreate{Name: "dc1"}, ""))
	mustDo(client.Create[types.Zone](ctx, api, "/v1/zones", types.ZoneCreate{Name: "rack1", Region: "dc1"}, ""))
	mustDo(client.Create[types.Project](ctx, api, "/v1/projects", types.ProjectCreate{Name: "p"}, ""))
	mustDo(client.Create[types.Flavor](ctx, api, "/v1/flavors", types.FlavorCreate{Name: "f", VCPUs: 1, RAMMiB: 128, DiskGiB: 1}, ""))
	img, err := client.Create[types.Image](ctx, api, "/v1/images", types.ImageCreate{Name: "i", DiskFormat: "raw"}, "")
	mustDo(img, err)
	mustDo(api.UploadImage(ctx, img.ID, strings.NewReader("image bytes")))
	tokenFile := filepath.Join(dir, "admin")
	os.WriteFile(tokenFile, []byte(admin), 0o600)
	consoles := filepath.Join(dir, "console")
	os.MkdirAll(consoles, 0o755)

	drv := &fakeDriver{running: map[string]types.GuestSpec{}}
	start := func() (stop func(), a *Agent) {
		actx, cancel := context.WithCancel(ctx)
		a, err := New(Config{Endpoint: hs.URL, RegistrationTokenFile: tokenFile, Name: "hv1", Region: "dc1", Zone: "rack1",
			StateDir: filepath.Join(dir, "state"), Prober: newFakeProber(), Guests: drv, WatchWait: 200 * time.Millisecond,
			HeartbeatInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), Resync: time.Hour,
			Consoles: dirConsoles(consoles), ConsoleInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { a.Run(actx); close(done) }()
		return func() { cancel(); <-done }, a
	}
	stop, a := start()
	defer func() { stop() }()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the host", func() bool { return a.HostID() != "" })
	var s1 types.Server
	waitFor("s1 placed", func() bool {
		s1, err = client.Create[types.Server](ctx, api, "/v1/servers", types.ServerCreate{Name: "s1", Kind: "vm", Project: "p", Flavor: "f", Image: "i"}, "")
		return err == nil
	})
	log := filepath.Join(consoles, s1.ID+".log")
	appendLog := func(s string) {
		f, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	lines := func() []string {
		c, err := api.ConsoleTail(ctx, s1.ID, types.MaxConsoleLines)
		if err != nil {
			t.Fatal(err)
		}
		return c.Lines
	}
	appendLog("SeaBIOS\r\nGUEST-READY s1 addr=10.0.0.5/24\n")
	waitFor("the marker through the API", func() bool { return len(lines()) == 2 })
	// A large burst arrives in several uploads, in order, whole.
	var want []string
	var b strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&b, "burst line %04d\n", i)
		want = append(want, fmt.Sprintf("burst line %04d", i))
	}
	appendLog(b.String())
	waitFor("the burst", func() bool { l := lines(); return len(l) > 0 && l[len(l)-1] == "burst line 2999" })

	// A restarted agent sends the log's tail again; corrald keeps it once.
	stop()
	appendLog("after restart\n")
	stop, _ = start()
	waitFor("the line written while the agent was down", func() bool { l := lines(); return l[len(l)-1] == "after restart" })
	got := lines()
	if d := cmp.Diff(append(want[len(want)-len(got)+1:], "after restart"), got); d != "" {
		t.Errorf("console after the restart: lines duplicated or lost (-want +got):\n%s", d)
	}

	// The log starts over (rotated): followed from its new start.
	if err := os.Remove(log); err != nil {
		t.Fatal(err)
	}
	appendLog("rebooted\n")
	waitFor("the new log", func() bool { l := lines(); return l[len(l)-1] == "rebooted" })

	// Input typed through the API reaches the guest's console, in order.
	waitFor("s1 active", func() bool {
		s, err := client.Get[types.Server](ctx, api, "/v1/servers/"+s1.ID)
		return err == nil && s.State == types.ServerActive
	})
	for _, in := range []string{"uptime\n", "\u0003", "ls /\n"} {
		if err := api.SendConsoleInput(ctx, s1.ID, in); err != nil {
			t.Fatal(err)
		}
	}
	typed := func() string { b, _ := os.ReadFile(filepath.Join(consoles, s1.ID+".in")); return string(b) }
	waitFor("the input typed", func() bool { return typed() == "uptime\n\u0003ls /\n" })
}
