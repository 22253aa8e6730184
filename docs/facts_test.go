package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/corral-cloud/corral/api/store"
)

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestNoStaleText: sentences that were once true and are not any more do
// not come back. Each names what replaced it.
func TestNoStaleText(t *testing.T) {
	for _, tc := range []struct{ file, stale, because string }{
		{"../README.md", "in coming work", "the agent runs guests through libvirt and Open vSwitch"},
		{"architecture.md", "later: libvirt", "the agent drives libvirt and Open vSwitch"},
		{"architecture.md", "later: bare-metal", "bare metal exists (baremetal.md)"},
		{"api.md", "If-None-Match` / `304 Not Modified` is not supported", "GET answers 304 to If-None-Match"},
		{"api.md", "Its ports are unplugged and keep their addresses.", "ports a create made go with the server"},
		{"../ansible/README.md", "not built yet", "the dynamic inventory plugin exists (plugins/inventory/corral.py)"},
	} {
		if strings.Contains(readDoc(t, tc.file), tc.stale) {
			t.Errorf("%s still says %q: %s", tc.file, tc.stale, tc.because)
		}
	}
}

// TestSchemaVersion: the documents give the schema version this binary
// writes (store.LatestVersion), wherever they state it.
func TestSchemaVersion(t *testing.T) {
	want := strconv.Itoa(store.LatestVersion)
	found := 0
	for _, tc := range []struct {
		file string
		re   *regexp.Regexp
	}{
		{"api.md", regexp.MustCompile(`"schema_version":(\d+)`)},
		{"operations.md", regexp.MustCompile(`"schema_version":(\d+)`)},
		{"operations.md", regexp.MustCompile("`store.LatestVersion`, now (\\d+)")},
		{"architecture.md", regexp.MustCompile("The current version is (\\d+) \\(`store.LatestVersion`\\)")},
	} {
		ms := tc.re.FindAllStringSubmatch(readDoc(t, tc.file), -1)
		if len(ms) == 0 {
			t.Errorf("%s: no %s: the test no longer finds where the version is given", tc.file, tc.re)
		}
		for _, m := range ms {
			found++
			if m[1] != want {
				t.Errorf("%s: %q gives schema version %s, the binary writes %s", tc.file, m[0], m[1], want)
			}
		}
	}
	// The newest migration is the one the architecture page names last.
	files, _ := filepath.Glob("../api/store/migrations/*.sql")
	if len(files) != store.LatestVersion {
		t.Errorf("%d migration files, LatestVersion %d", len(files), store.LatestVersion)
	}
}
