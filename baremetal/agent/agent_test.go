package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-cloud/corral/api/types"
)

// fakeNode is a /proc, /sys and /dev tree with one 8 MiB disk "vda" (a
// file), and a fake corrald that serves image and records reports.
type fakeNode struct {
	root    string
	image   []byte
	mu      sync.Mutex
	reports []types.AgentReport
	cut     int // the first cut image downloads end early
	srv     *httptest.Server
	// clean is the cleaning mode the claim answers; claims counts them;
	// refuse, if set, is the claim's refusal status.
	clean  string
	mode   string
	claims int
	refuse int
}

func newFakeNode(t *testing.T, image []byte) *fakeNode {
	t.Helper()
	f := &fakeNode{root: t.TempDir(), image: image}
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(filepath.Join(f.root, p)), 0o755)
		if err := os.WriteFile(filepath.Join(f.root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("/proc/cpuinfo", "processor\t: 0\nmodel name\t: QEMU Virtual CPU\nprocessor\t: 1\n")
	write("/proc/meminfo", "MemTotal:         262144 kB\n")
	write("/sys/block/vda/size", "16384\n") // 8 MiB
	write("/sys/block/loop0/size", "100\n")
	write("/sys/class/net/eth0/address", "52:54:00:00:00:01\n")
	write("/dev/vda", strings.Repeat("x", 8<<20))
	sum := sha256.Sum256(image)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if r.URL.Path == "/agent/claim" {
			f.claims++
			if r.Header.Get("Authorization") != "Bearer tok" || f.refuse != 0 || f.claims > 1 {
				http.Error(w, "no", max(f.refuse, http.StatusForbidden))
				return
			}
			json.NewEncoder(w).Encode(types.AgentWork{Token: "sess", Mode: f.mode, Clean: f.clean})
			return
		}
		// After the claim, only the session token works.
		if r.Header.Get("Authorization") != "Bearer sess" || r.URL.Query().Get("node") != "node-1" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		switch r.URL.Path {
		case "/agent/image":
			w.Header().Set("X-Checksum-Sha256", hex.EncodeToString(sum[:]))
			w.Header().Set("Content-Length", itoa(len(f.image)))
			cut := f.cut > 0
			f.cut--
			if cut { // corrald dies mid-stream
				w.Write(f.image[:len(f.image)/2])
				panic(http.ErrAbortHandler)
			}
			w.Write(f.image)
		case "/agent/report":
			var rep types.AgentReport
			json.NewDecoder(r.Body).Decode(&rep)
			f.reports = append(f.reports, rep)
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func itoa(n int) string { return strconv.Itoa(n) }

func (f *fakeNode) agent(mode string) *Agent {
	f.mu.Lock()
	f.mode = mode
	f.mu.Unlock()
	var log bytes.Buffer
	return &Agent{Orders: Orders{URL: f.srv.URL, Node: "node-1", Token: "tok", Mode: mode}, Root: f.root, Log: &log,
		RetryFor: 30 * time.Second}
}

func TestParseCmdline(t *testing.T) {
	o, err := ParseCmdline("console=ttyS0 ip=dhcp corral.url=http://10.0.0.1:8089 corral.node=node-1 corral.token=abc corral.mode=deploy\n")
	if err != nil || o != (Orders{URL: "http://10.0.0.1:8089", Node: "node-1", Token: "abc", Mode: "deploy"}) {
		t.Errorf("orders = %+v, %v", o, err)
	}
	if _, err := ParseCmdline("console=ttyS0 quiet"); err == nil {
		t.Error("a command line without orders was accepted")
	}
}

// TestDeploy: the image lands on the disk, a stream cut by a corrald
// restart is fetched again, and the report carries the digest read back.
func TestDeploy(t *testing.T) {
	image := bytes.Repeat([]byte("corral"), (3<<20)/6+5) // not a whole number of MiB
	f := newFakeNode(t, image)
	f.cut = 1
	if err := f.agent(types.AgentDeploy).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	disk, _ := os.ReadFile(filepath.Join(f.root, "dev/vda"))
	if !bytes.Equal(disk[:len(image)], image) || disk[len(image)] != 'x' {
		t.Error("the disk does not hold the image (or more was written)")
	}
	sum := sha256.Sum256(image)
	if len(f.reports) != 2 {
		t.Fatalf("reports = %+v", f.reports)
	}
	first, last := f.reports[0], f.reports[1]
	if first.Done || first.Hardware.CPUs != 2 || first.Hardware.RAMMiB != 256 || len(first.Hardware.Disks) != 1 ||
		first.Hardware.Disks[0] != (types.NodeDisk{Name: "vda", SizeBytes: 8 << 20}) || first.MACs[0] != "52:54:00:00:00:01" {
		t.Errorf("first report = %+v", first)
	}
	if !last.Done || !last.OK || last.SHA256 != hex.EncodeToString(sum[:]) || last.Bytes != int64(len(image)) || last.Disk != "vda" {
		t.Errorf("last report = %+v", last)
	}
}

// TestDeployImageTooBig: no disk holds the image → a failure report.
func TestDeployImageTooBig(t *testing.T) {
	f := newFakeNode(t, make([]byte, 9<<20))
	if err := f.agent(types.AgentDeploy).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	last := f.reports[len(f.reports)-1]
	if !last.Done || last.OK || !strings.Contains(last.Error, "no disk holds") {
		t.Errorf("last report = %+v", last)
	}
}

// TestCleanQuick: the first and last MiB are zeroed, the middle kept.
func TestCleanQuick(t *testing.T) {
	f := newFakeNode(t, nil)
	f.clean = types.CleanQuick
	if err := f.agent(types.AgentClean).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	disk, _ := os.ReadFile(filepath.Join(f.root, "dev/vda"))
	zero := make([]byte, 1<<20)
	if !bytes.Equal(disk[:1<<20], zero) || !bytes.Equal(disk[len(disk)-1<<20:], zero) || disk[4<<20] != 'x' {
		t.Error("cleaning did not wipe exactly the first and last MiB")
	}
	if last := f.reports[len(f.reports)-1]; !last.Done || !last.OK {
		t.Errorf("last report = %+v", last)
	}
}

// TestCleanFull: by default every byte of the disk is zeroed and read
// back, and the log says so.
func TestCleanFull(t *testing.T) {
	f := newFakeNode(t, nil)
	a := f.agent(types.AgentClean)
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	disk, _ := os.ReadFile(filepath.Join(f.root, "dev/vda"))
	if len(disk) != 8<<20 || !bytes.Equal(disk, make([]byte, 8<<20)) {
		t.Error("a full clean left non-zero bytes on the disk")
	}
	if last := f.reports[len(f.reports)-1]; !last.Done || !last.OK {
		t.Errorf("last report = %+v", last)
	}
	if log := a.Log.(*bytes.Buffer).String(); !strings.Contains(log, "erased /dev/vda end to end (8388608 bytes written with zeroes) and verified") {
		t.Errorf("log: %s", log)
	}
}

// TestVerifyZero: a byte the erase missed is found.
func TestVerifyZero(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "disk")
	b := make([]byte, 3<<20+100)
	os.WriteFile(dev, b, 0o644)
	if err := verifyZero(dev, int64(len(b))); err != nil {
		t.Errorf("zero disk: %v", err)
	}
	b[2<<20+7] = 1
	os.WriteFile(dev, b, 0o644)
	if err := verifyZero(dev, int64(len(b))); err == nil || !strings.Contains(err.Error(), "byte 2097159") {
		t.Errorf("non-zero disk: %v", err)
	}
}

// TestClaimRefused: a boot token corrald refuses (replayed, expired, not
// from the lease) ends the agent at once: no report, no disk touched,
// and the exchange is not retried.
func TestClaimRefused(t *testing.T) {
	for _, code := range []int{http.StatusForbidden, http.StatusUnauthorized} {
		f := newFakeNode(t, nil)
		f.refuse = code
		err := f.agent(types.AgentClean).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "refused the boot token") {
			t.Errorf("%d: Run = %v", code, err)
		}
		disk, _ := os.ReadFile(filepath.Join(f.root, "dev/vda"))
		if len(f.reports) != 0 || f.claims != 1 || disk[0] != 'x' {
			t.Errorf("%d: reports %+v, claims %d, disk touched %v", code, f.reports, f.claims, disk[0] != 'x')
		}
	}
}
