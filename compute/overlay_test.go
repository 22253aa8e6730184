package compute

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestOverlayArgs: the base's format is passed as given, never "qcow2" for
// every image, and anything but qcow2 or raw is refused before qemu-img
// runs.
func TestOverlayArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		format  string
		size    int64
		want    []string
		wantErr bool
	}{
		{"raw", "raw", 0, []string{"create", "-q", "-f", "qcow2", "-b", "/c/base", "-F", "raw", "/d/x.tmp"}, false},
		{"qcow2 grown", "qcow2", 4, []string{"create", "-q", "-f", "qcow2", "-b", "/c/base", "-F", "qcow2", "/d/x.tmp", "4G"}, false},
		{"empty", "", 0, nil, true},
		{"vmdk", "vmdk", 0, nil, true},
		{"option smuggling", "raw,backing_file=/etc/shadow", 0, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := overlayArgs("/c/base", tc.format, "/d/x.tmp", tc.size)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCreateOverlayRealFormats runs qemu-img: an overlay of a raw base
// records the base as raw (with -F qcow2 qemu-img refuses a raw base, and a
// guest could not boot), and an overlay of a qcow2 base records qcow2.
func TestCreateOverlayRealFormats(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("qemu-img is needed (package qemu-utils): %v", err)
	}
	dir := t.TempDir()
	for _, format := range []string{"raw", "qcow2"} {
		t.Run(format, func(t *testing.T) {
			base := filepath.Join(dir, "base-"+format)
			if out, err := exec.Command("qemu-img", "create", "-q", "-f", format, base, "1M").CombinedOutput(); err != nil {
				t.Fatalf("create base: %v: %s", err, out)
			}
			disk := filepath.Join(dir, "disk-"+format+".qcow2")
			if err := createOverlay(t.Context(), base, format, disk, 1); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("qemu-img", "info", "--output=json", disk).Output()
			if err != nil {
				t.Fatal(err)
			}
			var info struct {
				Format        string `json:"format"`
				Backing       string `json:"backing-filename"`
				BackingFormat string `json:"backing-filename-format"`
				VirtualSize   int64  `json:"virtual-size"`
			}
			if err := json.Unmarshal(out, &info); err != nil {
				t.Fatal(err)
			}
			want := struct {
				Format        string
				Backing       string
				BackingFormat string
				VirtualSize   int64
			}{"qcow2", base, format, 1 << 30}
			if diff := cmp.Diff(want, struct {
				Format        string
				Backing       string
				BackingFormat string
				VirtualSize   int64
			}(info)); diff != "" {
				t.Errorf("overlay (-want +got):\n%s", diff)
			}
		})
	}
	// The old behaviour: a raw base declared qcow2 is refused by qemu-img,
	// which is why raw images could not boot.
	if err := createOverlay(t.Context(), filepath.Join(dir, "base-raw"), "qcow2", filepath.Join(dir, "wrong.qcow2"), 0); err == nil {
		t.Error("an overlay of a raw base with -F qcow2 was created; the test no longer shows the old failure")
	}
}
