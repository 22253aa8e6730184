package compute

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestTrash: a deleted guest's overlay stays in the trash for the grace
// period (its base image counted as in use), is removed after it, and is
// taken back when its server exists again.
func TestTrash(t *testing.T) {
	dir := t.TempDir()
	d := &Driver{cfg: Config{Dir: dir, DeletedDiskGrace: time.Hour}, log: slog.New(slog.DiscardHandler)}
	for _, sub := range []string{"disks", "trash"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o755)
	}
	now := time.Now()
	write := func(name, body string) string {
		p := filepath.Join(dir, "trash", name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	recent := now.Add(-10 * time.Minute).Unix()
	old := now.Add(-2 * time.Hour).Unix()
	fresh := write(fmt.Sprintf("srv-a.deleted-%d.qcow2", recent), "disk a")
	freshXML := write(fmt.Sprintf("srv-a.deleted-%d.xml", recent), `<domain><metadata><corral:corral xmlns:corral="https://corral.dev/xmlns/guest/1"><corral:image-sha256>abc</corral:image-sha256></corral:corral></metadata></domain>`)
	stale := write(fmt.Sprintf("srv-b.deleted-%d.qcow2", old), "disk b")
	other := write("unrelated.txt", "kept")

	bases := d.purgeTrash(now)
	if len(bases) != 1 || bases[0] != "abc" {
		t.Errorf("base images in use by the trash: %v, want [abc]", bases)
	}
	for _, p := range []string{fresh, freshXML, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed within the grace period: %v", filepath.Base(p), err)
		}
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("%s kept after the grace period (%v)", filepath.Base(stale), err)
	}

	if d.untrash("srv-b") {
		t.Error("untrash of a purged disk reported success")
	}
	if !d.untrash("srv-a") {
		t.Fatal("untrash of a trashed disk failed")
	}
	if b, err := os.ReadFile(d.diskPath("srv-a")); err != nil || string(b) != "disk a" {
		t.Errorf("disk back in place: %q %v", b, err)
	}
}
