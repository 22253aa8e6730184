package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Version, when set at link time (-ldflags "-X
// github.com/corral-cloud/corral/buildinfo.Version=1.4.0"), is the version
// reported instead of the module's. Packagers set it; `go build` in a
// checkout leaves the module version "(devel)".
var Version string

// Info is what a binary knows about its build.
type Info struct {
	Program string
	// Version is the module version ("(devel)" for a build in a
	// checkout, "v1.2.3" for `go install …@v1.2.3`), or Version if set.
	Version string
	// Revision and Time are the VCS commit and its time, empty when the
	// binary was built without VCS information (-buildvcs=false, or not
	// from a checkout). Modified says the work tree had changes.
	Revision string
	Time     string
	Modified bool
	// GoVersion is the toolchain that built the binary, e.g. "go1.26.8".
	GoVersion string
	Platform  string
}

// Read returns the build information of the running binary, named
// program.
func Read(program string) Info {
	info := Info{Program: program, Version: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info = FromBuildInfo(program, bi)
	}
	if Version != "" {
		info.Version = Version
	}
	return info
}

// FromBuildInfo extracts an Info from bi.
func FromBuildInfo(program string, bi *debug.BuildInfo) Info {
	info := Info{Program: program, Version: bi.Main.Version, GoVersion: bi.GoVersion, Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info.Version == "" {
		info.Version = "unknown"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "GOOS":
			info.Platform = s.Value + info.Platform[strings.Index(info.Platform, "/"):]
		case "GOARCH":
			info.Platform = info.Platform[:strings.Index(info.Platform, "/")+1] + s.Value
		}
	}
	return info
}

// String is the text a `version` command prints: the program and version
// on the first line, then one "key: value" line each for the revision,
// its time and the Go version.
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", i.Program, i.Version)
	rev := i.Revision
	switch {
	case rev == "":
		rev = "unknown (built without VCS information)"
	case i.Modified:
		rev += " (modified)"
	}
	fmt.Fprintf(&b, "  revision: %s\n", rev)
	if i.Time != "" {
		fmt.Fprintf(&b, "  time:     %s\n", i.Time)
	}
	fmt.Fprintf(&b, "  go:       %s %s\n", i.GoVersion, i.Platform)
	return b.String()
}

// Requested reports whether a daemon's command line asks for its version:
// "version" as the first argument, or a --version flag anywhere before
// "--". corrald and corral-agent answer it before parsing their flags.
func Requested(args []string) bool {
	if len(args) > 0 && args[0] == "version" {
		return true
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--version" || a == "-version" || a == "--version=true" || a == "-version=true" {
			return true
		}
	}
	return false
}
