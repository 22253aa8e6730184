package compute

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestWriteISO writes a NoCloud seed and reads it back with isoinfo: the
// label cloud-init looks for, and the files as rendered.
func TestWriteISO(t *testing.T) {
	if _, err := exec.LookPath("isoinfo"); err != nil {
		t.Skip("isoinfo (genisoimage) is not installed")
	}
	out := filepath.Join(t.TempDir(), "seed.iso")
	files := map[string][]byte{"meta-data": []byte("{\"instance-id\": \"srv-1\"}\n"), "user-data": []byte("#cloud-config\n")}
	if err := WriteISO(t.Context(), "cidata", files, out); err != nil {
		t.Fatal(err)
	}
	info, err := exec.Command("isoinfo", "-d", "-i", out).Output()
	if err != nil || !strings.Contains(string(info), "Volume id: cidata") {
		t.Fatalf("isoinfo -d: %v\n%s", err, info)
	}
	for name, want := range files {
		got, err := exec.Command("isoinfo", "-R", "-i", out, "-x", "/"+name).Output()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}
