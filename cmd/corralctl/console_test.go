package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	consoleTail = `{"lines":["booting","GUEST-READY web-1 addr=10.0.0.5/24"],"truncated":true,"partial":"/ # ","next":120}`
	consoleMore = `{"lines":["/ # uptime","up 5 s"],"truncated":false,"next":140}`
)

// TestServerConsoleLog: --log prints the tail, the line being written,
// and exits; older output is said to be hidden on stderr.
func TestServerConsoleLog(t *testing.T) {
	out, errOut, code, got := runFake(t, map[string]route{
		"GET /v1/servers/web-1":         replyError(404, "not_found", `server "web-1": not found`, nil),
		"GET /v1/servers":               reply(200, `{"items":[`+serverJSON+`]}`),
		"GET /v1/servers/srv-1":         reply(200, serverJSON),
		"GET /v1/servers/srv-1/console": byQuery(map[string]route{"tail=5": reply(200, consoleTail)}),
	}, "server", "console", "web-1", "--log", "--tail", "5")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if want := "booting\nGUEST-READY web-1 addr=10.0.0.5/24\n/ # \n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if !strings.Contains(errOut, "older output is not shown") {
		t.Errorf("stderr %q does not say older output is hidden", errOut)
	}
	if n := len(got); got[n-1].Path != "/v1/servers/srv-1/console" {
		t.Errorf("last request %+v", got[n-1])
	}
	if _, errOut, code, _ := runFake(t, nil, "server", "console", "web-1", "--tail", "0"); code != 2 || !strings.Contains(errOut, "--tail") {
		t.Errorf("--tail 0: exit %d %s", code, errOut)
	}
}

// TestServerConsoleFollow: without --log the tail is printed, then each
// follow's lines in order from the cursor the previous answer gave, until
// interrupted (exit 0).
func TestServerConsoleFollow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var cursors []string
	_, url := newFake(t, map[string]route{
		"GET /v1/servers/srv-1": reply(200, serverJSON),
		"GET /v1/servers/srv-1/console": func(w http.ResponseWriter, r *http.Request, n int) {
			q := r.URL.Query()
			if q.Get("follow") == "" {
				reply(200, consoleTail)(w, r, n)
				return
			}
			mu.Lock()
			cursors = append(cursors, q.Get("after"))
			mu.Unlock()
			switch {
			case q.Get("after") == "120":
				reply(200, consoleMore)(w, r, n)
			default: // nothing new: the user interrupts
				cancel()
				<-r.Context().Done()
			}
		},
	})
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	var out, errOut bytes.Buffer
	done := make(chan int)
	go func() {
		done <- newApp(&out, &errOut, func(k string) string { return map[string]string{envEndpoint: url, envToken: "test-token"}[k] }).execute(ctx, []string{"server", "console", "srv-1"})
	}()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("follow did not end when interrupted")
	}
	want := "booting\nGUEST-READY web-1 addr=10.0.0.5/24\n/ # uptime\nup 5 s\n"
	if out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	mu.Lock()
	defer mu.Unlock()
	if d := cmp.Diff([]string{"120", "140"}, cursors); d != "" {
		t.Errorf("follow cursors (-want +got):\n%s", d)
	}
}

// TestReportRightsizing: the report's thresholds go as query parameters
// only when given, and the answer prints as a server table and a rack table.
func TestReportRightsizing(t *testing.T) {
	rep := `{"window":"168h0m0s","cpu_p95_below":10,"mem_below":30,"min_hours":24,"headroom":1.5,
		"servers":[{"server_id":"srv-1","name":"idle","project_id":"prj-1","zone_id":"zone-1","flavor_id":"flv-l","flavor":"m1.large",
		"vcpus":4,"ram_mib":8192,"hours":30,"cpu_p95_pct":2,"cpu_max_pct":2.1,"mem_p95_pct":12.2,"mem_p95_mib":1000,
		"suggested":{"id":"flv-m","name":"m1.mid","vcpus":1,"ram_mib":2048,"disk_gib":1},"frees_vcpus":3,"frees_ram_mib":6144}],
		"racks":[{"zone_id":"zone-1","zone":"rack1","servers":1,"frees_vcpus":3,"frees_ram_mib":6144}]}`
	out, errOut, code, got := runFake(t, map[string]route{
		"GET /v1/reports/rightsizing": byQuery(map[string]route{"cpu_p95_below=5&window=3d": reply(200, rep)}),
	}, "report", "rightsizing", "--window", "3d", "--cpu-p95-below", "5")
	if code != 0 {
		t.Fatalf("exit %d: %s (requests %+v)", code, errOut, got)
	}
	for _, want := range []string{"idle", "rack1", "m1.large", "m1.mid", "3 vCPU, 6144 MiB", "FREES-RAM-MIB", "6144"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestServerConsoleSend: --send types each line, with its newline, before
// the console is shown.
func TestServerConsoleSend(t *testing.T) {
	_, errOut, code, got := runFake(t, map[string]route{
		"GET /v1/servers/srv-1":                reply(200, serverJSON),
		"POST /v1/servers/srv-1/console/input": reply(202, `{"queued":1}`),
		"GET /v1/servers/srv-1/console":        reply(200, consoleTail),
	}, "server", "console", "srv-1", "--log", "--send", "uptime", "--send", "ls /")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var bodies []string
	for _, r := range got {
		if r.Method == "POST" {
			bodies = append(bodies, r.Body)
		}
	}
	if d := cmp.Diff([]string{`{"data":"uptime\n"}`, `{"data":"ls /\n"}`}, bodies); d != "" {
		t.Errorf("inputs sent (-want +got):\n%s", d)
	}
	if _, errOut, code, _ := runFake(t, nil, "server", "console", "srv-1", "--log", "--stdin"); code != 2 || !strings.Contains(errOut, "--stdin") {
		t.Errorf("--log --stdin: exit %d %s", code, errOut)
	}
}
