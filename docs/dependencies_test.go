package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goModRequires returns the modules go.mod requires, direct ones with
// true.
func goModRequires(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	inBlock := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "require (":
			inBlock = true
		case line == ")":
			inBlock = false
		case inBlock && line != "":
			f := strings.Fields(line)
			out[f[0]] = !strings.Contains(line, "// indirect")
		case strings.HasPrefix(line, "require "):
			f := strings.Fields(line)
			out[f[1]] = !strings.Contains(line, "// indirect")
		}
	}
	return out
}

// TestDependenciesDoc: docs/dependencies.md names every direct dependency
// in go.mod, and everything it names exists: each module (or package of a
// module) is required by go.mod, at the version go.mod gives, and each of
// Corral's own packages it names is a directory of this repository.
func TestDependenciesDoc(t *testing.T) {
	doc := readDoc(t, "dependencies.md")
	mods := goModRequires(t)
	gomod, _ := os.ReadFile("../go.mod")

	for m, direct := range mods {
		if direct && !strings.Contains(doc, "`"+m+"`") {
			t.Errorf("dependencies.md does not name %s, a direct dependency in go.mod", m)
		}
	}
	// Table rows: | `module` | version | ...
	row := regexp.MustCompile("(?m)^\\| `([^`]+)` \\| (v[^ |]+) \\|")
	rows := row.FindAllStringSubmatch(doc, -1)
	if len(rows) < 10 {
		t.Fatalf("found %d module rows in dependencies.md: the test no longer reads the tables", len(rows))
	}
	for _, r := range rows {
		mod, version := r[1], r[2]
		if _, ok := mods[mod]; !ok {
			t.Errorf("dependencies.md names module %s, which go.mod does not require", mod)
			continue
		}
		if !strings.Contains(string(gomod), mod+" "+version) {
			t.Errorf("dependencies.md gives %s at %s, go.mod at another version", mod, version)
		}
	}
	// Every backquoted path that starts like one of Corral's top-level
	// directories (compute/libvirt, network/ovs, api/server, …) must be
	// a directory or file of the repository.
	top, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]bool{}
	for _, d := range top {
		if d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			dirs[d.Name()] = true
		}
	}
	quoted := regexp.MustCompile("`([a-z][a-z0-9_./-]*)`")
	checked := 0
	for _, m := range quoted.FindAllStringSubmatch(doc, -1) {
		p := m[1]
		first, _, _ := strings.Cut(p, "/")
		if !dirs[first] || strings.Contains(p, ".") && !strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, ".md") {
			continue
		}
		checked++
		if _, err := os.Stat(filepath.Join("..", p)); err != nil {
			t.Errorf("dependencies.md names %s, which does not exist in the repository", p)
		}
	}
	if checked < 5 {
		t.Fatalf("checked %d of Corral's own paths: the test no longer finds them", checked)
	}
}
