package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFromBuildInfo(t *testing.T) {
	tests := []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{name: "checkout with VCS",
			bi: debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "102d17e0aa"}, {Key: "vcs.time", Value: "2025-03-14T10:15:02Z"},
				{Key: "vcs.modified", Value: "true"}, {Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm64"}}},
			want: "corrald (devel)\n  revision: 102d17e0aa (modified)\n  time:     2025-03-14T10:15:02Z\n  go:       go1.26.8 linux/arm64\n"},
		{name: "release without VCS",
			bi:   debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}},
			want: "corrald v1.2.3\n  revision: unknown (built without VCS information)\n  go:       go1.26.8 " + runtime.GOOS + "/" + runtime.GOARCH + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FromBuildInfo("corrald", &tt.bi).String()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestRead: the test binary itself has build information, and a version
// set at link time wins over the module's.
func TestRead(t *testing.T) {
	got := Read("x")
	if got.GoVersion != runtime.Version() || got.Version == "" {
		t.Errorf("Read = %+v", got)
	}
	Version = "v9.9.9"
	defer func() { Version = "" }()
	if got := Read("x"); got.Version != "v9.9.9" || !strings.HasPrefix(got.String(), "x v9.9.9\n") {
		t.Errorf("with Version set: %+v", got)
	}
}

func TestRequested(t *testing.T) {
	for args, want := range map[string]bool{
		"version": true, "--version": true, "-version": true, "--listen x --version=true": true,
		"": false, "--listen x": false, "-- --version": false, "run version": false, "--version=false": false,
	} {
		if got := Requested(strings.Fields(args)); got != want {
			t.Errorf("Requested(%q) = %v, want %v", args, got, want)
		}
	}
}
